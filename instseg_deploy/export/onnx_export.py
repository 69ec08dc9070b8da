"""Whole-detector export to one ONNX graph of standard ops (or with our RoIAlign plugin node)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from instseg_deploy.atomic import atomic_path
from instseg_deploy.config import InstsegConfig
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.graph import ROI_ALIGN_FLAVOURS, ExportableMaskRCNN
from instseg_deploy.export.plugin_roi_align import OPSET_IMPORT
from instseg_deploy.model_file.metadata import build_metadata, metadata_to_props
from instseg_deploy.model_file.onnx_edit import ONNX_DOMAINS
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.graph_io import IMAGE_SIZES, IMAGES, ORIGINAL_SIZES, PASTED_MASKS, RAW_OUTPUTS
from instseg_deploy.processing.sizes import parse_hw

# RoiAlign with coordinate_transformation_mode (ROIAlignV2's half-pixel) needs opset 16.
MIN_OPSET = 16
DEFAULT_OPSET = 17


@dataclass
class ExportReport:
    path: Path
    nodes_before: int
    nodes_after: int
    simplified: bool
    opset: int
    size_bytes: int


def _example_inputs(batch: int, size: tuple[int, int], divisibility: int, paste: bool):
    h, w = size
    g = torch.Generator().manual_seed(0)
    images = torch.rand((batch, 3, h, w), generator=g) * 255
    sizes = torch.tensor([[h - (i * divisibility) % h, w] for i in range(batch)], dtype=torch.int64)
    args = (images, sizes)
    if paste:
        args += (sizes * 2,)
    return args


def parse_size(size: str) -> str | tuple[int, int]:
    """'dynamic' or 'HxW'."""
    if size == "dynamic":
        return size
    return parse_hw(size, "--size (or 'dynamic')")


def parse_batch(batch: str) -> str | int:
    if batch == "dynamic":
        return batch
    if not batch.isdigit() or int(batch) < 1:
        raise InstsegError(f"--batch must be 'dynamic' or a positive integer, got {batch!r}")
    return int(batch)


def export_onnx(model: MaskRCNN, cfg: InstsegConfig, out: str | os.PathLike, opset: int = DEFAULT_OPSET,
                batch: str | int = "dynamic", size: str | tuple[int, int] = "dynamic", masks: str = "raw",
                simplify: bool = True, roi_align: str = "onnx") -> ExportReport:
    """Trace the detector and write a checked, self-describing ONNX file atomically."""
    import onnx

    if opset < MIN_OPSET:
        raise InstsegError(f"--opset {opset} is too old: RoiAlign with half-pixel coordinates needs "
                           f"opset >= {MIN_OPSET}")
    if masks not in ("raw", "pasted"):
        raise InstsegError(f"--masks must be 'raw' or 'pasted', got {masks!r}")
    if roi_align not in ROI_ALIGN_FLAVOURS:
        raise InstsegError(f"--roi-align must be 'onnx' or 'plugin', got {roi_align!r}")
    divisibility = model.size_divisibility
    if size != "dynamic" and (size[0] % divisibility or size[1] % divisibility):
        raise InstsegError(f"--size {size[0]}x{size[1]} must be a multiple of {divisibility} (the backbone's stride)")
    paste = masks == "pasted"
    wrapper = ExportableMaskRCNN(model.eval(), paste_masks=paste, roi_align=roi_align).eval()
    example = _example_inputs(batch if isinstance(batch, int) else 2, size if size != "dynamic" else (320, 352),
                              divisibility, paste)
    inputs = [IMAGES, IMAGE_SIZES] + ([ORIGINAL_SIZES] if paste else [])
    outputs = list(RAW_OUTPUTS) + ([PASTED_MASKS] if paste else [])
    dynamic_axes = {name: {0: "num_detections"} for name in outputs}
    if paste:
        dynamic_axes[PASTED_MASKS].update({1: "canvas_height", 2: "canvas_width"})
    if batch == "dynamic":
        for name in inputs:
            dynamic_axes[name] = {0: "batch"}
    if size == "dynamic":
        dynamic_axes.setdefault(IMAGES, {}).update({2: "height", 3: "width"})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic are expected here
        torch.onnx.export(wrapper, example, buffer, dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic_axes, do_constant_folding=True,
                          custom_opsets=OPSET_IMPORT if roi_align == "plugin" else {})
    proto = onnx.load_from_string(buffer.getvalue())
    nodes_before = len(proto.graph.node)
    simplified = False
    if simplify:
        proto, simplified = _simplify(proto)
    explicit_nms_score_threshold(proto)
    meta = build_metadata(cfg, masks, batch, size, roi_align, inputs, outputs)
    for key, value in metadata_to_props(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "instseg-deploy"
    onnx.checker.check_model(proto, full_check=roi_align == "onnx")
    proto = onnx.shape_inference.infer_shapes(proto)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return ExportReport(out, nodes_before, len(proto.graph.node), simplified, opset, out.stat().st_size)


NMS_SCORE_THRESHOLD = "nms_score_threshold"


def explicit_nms_score_threshold(proto) -> None:
    """Give every NonMaxSuppression node an explicit score_threshold of float32's lowest value, in place.

    ONNX's NMS without score_threshold filters no score; TensorRT's parser then leaves INMSLayer at its
    own default of 0.0 (keep scores > 0), which drops most RPN proposals, whose scores are logits
    (export/trt/NMS.md). Every finite score passes the lowest float32 (non-finite ones are removed
    before NMS), so ONNX Runtime and OpenVINO give the same detections as without it.
    """
    import numpy as np
    from onnx import numpy_helper

    nodes = [n for n in proto.graph.node if n.op_type == "NonMaxSuppression" and n.domain in ONNX_DOMAINS]
    if not nodes:
        return
    proto.graph.initializer.append(numpy_helper.from_array(np.array([np.finfo(np.float32).min], np.float32),
                                                           NMS_SCORE_THRESHOLD))
    for node in nodes:
        while len(node.input) < 4:  # optional inputs before it left out: "" marks them absent
            node.input.append("")
        if len(node.input) == 4:
            node.input.append(NMS_SCORE_THRESHOLD)
        elif not node.input[4]:
            node.input[4] = NMS_SCORE_THRESHOLD


def _simplify(proto):
    """onnxslim when installed (constant folding, dead code, fusions); the graph stays valid either way."""
    try:
        import onnxslim
    except ImportError:
        warnings.warn("onnxslim is not installed: exporting without simplification (pip install onnxslim)",
                      stacklevel=3)  # attributed to export_onnx's caller
        return proto, False
    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(proto), True


def count_nodes(path: str | os.PathLike) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


