"""The self-description stored in an exported model (ONNX metadata_props / engine sidecar).

One JSON document under the key ``instseg``: class names, preprocessing, thresholds, the
graph's inputs/outputs and the source config, so that a deployed file needs nothing else --
the Python backends and the C++ runtime read the same fields.
"""

from __future__ import annotations

import copy
import json
import math
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
# In an INT8 file's meta["int8"]: its weights' bits (8, or 7 for CPUs without VNNI); absent: 8.
WEIGHT_BITS_KEY = "weight_bits"


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
        # The merged config without keys detectron2 does not know (reported when it was read; never
        # embedded blindly), plus the command-line overrides that made it.
        "config": dump_tree(_without_keys(cfg.raw, cfg.unknown_keys)),
        "config_source": cfg.source,
        "config_overrides": list(cfg.overrides),
    }


def _without_keys(tree: dict[str, Any], dotted: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``tree`` without the dotted keys (e.g. "SOLVER.FOO")."""
    out = copy.deepcopy(tree)
    for key in dotted:
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def metadata_to_props(meta: dict[str, Any]) -> dict[str, str]:
    return {METADATA_KEY: json.dumps(meta)}


def parse_metadata(props: dict[str, str], source: str) -> dict[str, Any]:
    """Our metadata from a key/value map; a clear error when it is missing or unreadable."""
    if METADATA_KEY not in props:
        raise InstsegError(f"{source} has no instseg metadata (not exported by `instseg export`); "
                           "pass --config to supply preprocessing and class names")
    try:
        meta = json.loads(props[METADATA_KEY])
    except (json.JSONDecodeError, RecursionError, TypeError):
        raise InstsegError(f"{source}: instseg metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise InstsegError(f"{source}: instseg metadata is a JSON {type(meta).__name__}, not an object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InstsegError(f"{source}: instseg metadata has no integer format_version")
    if version > FORMAT_VERSION:
        raise InstsegError(f"{source} was written by a newer instseg-deploy (metadata format "
                           f"{meta['format_version']}); upgrade to read it")
    problem = _metadata_problem(meta)
    if problem:
        raise InstsegError(f"{source}: malformed instseg metadata: {problem}")
    return meta


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metadata_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the fields every reader relies on (None: nothing)."""
    names, pre, post = meta.get("class_names"), meta.get("preprocess"), meta.get("postprocess")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "class_names must be a non-empty list of strings"
    if meta.get("num_classes") != len(names):
        return f"num_classes ({meta.get('num_classes')!r}) differs from the {len(names)} class names"
    if not isinstance(pre, dict):
        return "preprocess must be an object"
    if pre.get("input_format") not in ("BGR", "RGB"):
        return "preprocess.input_format must be BGR or RGB"
    for key in ("min_size", "max_size"):
        if not isinstance(pre.get(key), int) or isinstance(pre.get(key), bool) or not 0 < pre[key] <= 100_000:
            return f"preprocess.{key} must be a positive integer"
    if not isinstance(pre.get("size_divisibility"), int) or not 0 <= pre["size_divisibility"] <= 4096:
        return "preprocess.size_divisibility must be an integer in [0, 4096]"
    for key in ("pixel_mean", "pixel_std"):
        value = pre.get(key)
        if not isinstance(value, list) or len(value) != 3 or not all(_number(v) for v in value):
            return f"preprocess.{key} must be 3 numbers"
    if any(v == 0 for v in pre["pixel_std"]):
        return "preprocess.pixel_std must not be 0"
    if not isinstance(post, dict) or not _number(post.get("score_thresh")) or post.get("masks") not in ("raw",
                                                                                                       "pasted"):
        return "postprocess must hold a numeric score_thresh and masks raw or pasted"
    batch, size = meta.get("batch", "dynamic"), meta.get("size", "dynamic")
    if batch != "dynamic" and not (isinstance(batch, int) and not isinstance(batch, bool) and batch > 0):
        return "batch must be 'dynamic' or a positive integer"
    if size != "dynamic" and not (isinstance(size, list) and len(size) == 2
                                  and all(isinstance(v, int) and v > 0 for v in size)):
        return "size must be 'dynamic' or [height, width]"
    return None


def preprocess_params(meta: dict[str, Any]) -> PreprocessParams:
    p = meta["preprocess"]
    return PreprocessParams(p["input_format"], int(p["min_size"]), int(p["max_size"]), tuple(p["pixel_mean"]),
                            tuple(p["pixel_std"]), int(p["size_divisibility"]))
