"""bf16 on OpenVINO's CPU plugin with the RoI box geometry kept in f32.

Under ``INFERENCE_PRECISION_HINT`` bf16 the CPU plugin runs in bf16 every node that lies between two
of its compute layers (convolution, fully connected, matmul, interpolate, ...), and keeps f32 only the
graph's tail: the nodes a graph output is reached from without crossing such a layer (its
``EnforceInferencePrecision``). A Mask R-CNN's multi-level poolers sit between the FPN convolutions
and the box and mask heads, so the plugin rounds their box coordinates, the FPN level of each box
(from the square root of its area) and the per-level gathers of boxes to bf16's 8 significant bits:
a box edge at x = 700 px moves in steps of 4 px, above 1024 px in steps of 8 (measured in the
execution graph of our exports, openvino 2026.4). Making every RoIAlign's box input a model output
turns that path into tail, which the plugin keeps in f32; the features RoIAlign samples stay bf16.

OpenVINO's own way to keep a node precise (its precision-conversion runtime attribute) is not
settable from Python, and written into an IR it kept the per-level gathers f32 but not the level
computation, whose nodes the plugin's transformations rebuild without it; hence the extra outputs.
"""

from __future__ import annotations

from typing import Any

ROI_ALIGN_TYPE = "ROIAlign"  # OpenVINO's op type of ONNX RoiAlign
ROI_ALIGN_BOXES_PORT = 1  # (data, rois, batch_indices)


def keep_roi_geometry_f32(model: Any) -> int:
    """Add each RoIAlign's box input of the ``openvino.Model`` as an output (in place); the count added
    (0 for a model that has them already).

    The outputs are only there to make the plugin keep their producers in f32; runners ignore them.
    Each gets a tensor name: Triton's OpenVINO backend calls get_any_name() on every output.
    """
    boxes = [op.input_value(ROI_ALIGN_BOXES_PORT) for op in model.get_ops() if op.get_type_name() == ROI_ALIGN_TYPE]
    for port in boxes:
        if not port.get_names():
            port.get_tensor().set_names({f"{port.get_node().get_friendly_name()}:{port.get_index()}"})
    before = len(model.outputs)
    if boxes:
        model.add_outputs(boxes)  # a port that is an output already is not added twice
    return len(model.outputs) - before
