"""The self-description stored in an exported model (ONNX metadata_props / engine sidecar).

One JSON document under the key ``instseg``: class names, preprocessing, thresholds, the
graph's inputs/outputs and the source config, so that a deployed file needs nothing else --
the Python backends and the C++ runtime read the same fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from instseg_deploy import __version__
from instseg_deploy.config import InstsegConfig, dump_tree
from instseg_deploy.errors import InstsegError
from instseg_deploy.processing.preprocess import PreprocessParams

METADATA_KEY = "instseg"
FORMAT_VERSION = 1
# In an INT8 file's meta["int8"]: the Convs whose pre-MaxPool activation `instseg quantize` keeps float
# (quantize.qdq_layout.float_pre_pool_activations); its absence marks a file OpenVINO mis-computes.
FLOAT_PRE_POOL_KEY = "float_pre_pool_activations"


def build_metadata(cfg: InstsegConfig, masks: str, batch: str | int, size: str | tuple[int, int],
                   roi_align: str, inputs: list[str], outputs: list[str], precision: str = "fp32") -> dict[str, Any]:
    m = cfg.model
    params = PreprocessParams.from_model_config(m)
    return {
        "format_version": FORMAT_VERSION,
        "producer": f"instseg-deploy {__version__}",
        "class_names": list(cfg.class_names or ()),
        "num_classes": m.num_classes,
        "preprocess": {
            **asdict(params),
            "resize": "ResizeShortestEdge, Pillow bilinear on uint8, sizes rounded half up",
            "pad": "bottom/right to a multiple of size_divisibility, filled with pixel_mean",
            "normalize": "inside the graph: (x - pixel_mean) / pixel_std",
        },
        "postprocess": {
            "score_thresh": m.roi_heads.score_thresh_test,
            "nms_thresh": m.roi_heads.nms_thresh_test,
            "detections_per_image": m.roi_heads.detections_per_image,
            "mask_threshold": 0.5,
            "masks": masks,
        },
        "batch": batch,
        "size": size if isinstance(size, str) else list(size),
        "roi_align": roi_align,
        "precision": precision,
        "inputs": inputs,
        "outputs": outputs,
        "config": dump_tree(cfg.raw),
        "config_source": cfg.source,
    }


def metadata_to_props(meta: dict[str, Any]) -> dict[str, str]:
    return {METADATA_KEY: json.dumps(meta)}


def parse_metadata(props: dict[str, str], source: str) -> dict[str, Any]:
    """Our metadata from a key/value map; a clear error when it is missing or unreadable."""
    if METADATA_KEY not in props:
        raise InstsegError(f"{source} has no instseg metadata (not exported by `instseg export`); "
                           "pass --config to supply preprocessing and class names")
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError:
        raise InstsegError(f"{source}: instseg metadata is not valid JSON") from None
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InstsegError(f"{source} was written by a newer instseg-deploy (metadata format "
                           f"{meta['format_version']}); upgrade to read it")
    return meta


def preprocess_params(meta: dict[str, Any]) -> PreprocessParams:
    p = meta["preprocess"]
    return PreprocessParams(p["input_format"], int(p["min_size"]), int(p["max_size"]), tuple(p["pixel_mean"]),
                            tuple(p["pixel_std"]), int(p["size_divisibility"]))
