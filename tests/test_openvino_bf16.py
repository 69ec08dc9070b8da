"""bf16 on OpenVINO's CPU plugin keeps the poolers' box geometry in f32 (runtime.openvino_bf16): checked
in the plugin's execution graph, where each node says the precision it runs in."""

from __future__ import annotations

import pytest

from instseg_deploy.runtime.factory import exported_model_predictor
from instseg_deploy.runtime.openvino import OpenVinoSettings, cpu_capabilities, load_openvino_runner, shared_core
from instseg_deploy.runtime.openvino_bf16 import ROI_ALIGN_TYPE, keep_roi_geometry_f32

ov = pytest.importorskip("openvino", reason="openvino is not installed")

needs_bf16 = pytest.mark.skipif("BF16" not in cpu_capabilities(shared_core()),
                                reason="this CPU has no native BF16 (OpenVINO runs --precision bf16 as f32 here)")


def _exec_nodes(compiled) -> dict[str, tuple[str, str, str, list[str]]]:
    """{node name: (layer type, runtime precision, original layer names, input node names)} of the
    execution graph. Only strings leave, so no node of the runtime model outlives it."""
    runtime_model = compiled.get_runtime_model()

    def info(op, key):
        rt_info = op.get_rt_info()
        return str(rt_info[key].astype(str)) if key in rt_info else ""

    nodes = {op.get_friendly_name(): (info(op, "layerType"), info(op, "runtimePrecision"),
                                      info(op, "originalLayersNames"),
                                      [v.get_node().get_friendly_name() for v in op.input_values()])
             for op in runtime_model.get_ops()}
    del runtime_model
    return nodes


def _geometry_precisions(runner) -> tuple[set[str], set[str]]:
    """(precisions of the nodes that compute the FPN level of each box (its Sqrt of the area), precisions
    of the nodes feeding each RoIAlign its boxes)."""
    nodes = _exec_nodes(runner.compiled)
    level = {prec for kind, prec, names, _ in nodes.values() if "Sqrt" in names and "pooler" in names}
    boxes = set()
    for kind, _, _, inputs in nodes.values():
        if kind == ROI_ALIGN_TYPE:
            source_kind, source_precision, _, source_inputs = nodes[inputs[1]]
            if source_kind == "Reorder":  # a precision change: say from what
                source_precision = f"reordered from {nodes[source_inputs[0]][1]}"
            boxes.add(source_precision)
    return level, boxes


def test_every_roi_align_box_input_becomes_an_output(exported_onnx):
    model = shared_core().read_model(str(exported_onnx["raw"]))
    roi_aligns = sum(op.get_type_name() == ROI_ALIGN_TYPE for op in model.get_ops())
    outputs = len(model.outputs)
    assert roi_aligns == 8  # box and mask pooler, four FPN levels each
    assert keep_roi_geometry_f32(model) == roi_aligns and len(model.outputs) == outputs + roi_aligns
    assert all(port.get_names() for port in model.outputs)  # Triton's openvino backend names each output
    assert keep_roi_geometry_f32(model) == 0 and len(model.outputs) == outputs + roi_aligns  # once only


def test_an_unnamed_box_input_gets_a_name():
    import numpy as np
    from openvino import opset9 as ops

    data = ops.parameter([1, 4, 8, 8], np.float32, name="data")
    rois = ops.parameter([3, 4], np.float32, name="rois")
    batch = ops.parameter([3], np.int32, name="batch")
    scaled = ops.multiply(rois, ops.constant(np.float32(0.5)))  # a tensor without names
    pooled = ops.roi_align(data, scaled, batch, 2, 2, 0, 1.0, "avg")
    model = ov.Model([pooled], [data, rois, batch], "tiny")
    assert not scaled.output(0).get_names()
    assert keep_roi_geometry_f32(model) == 1
    # a name of its own on the tensor, whatever this OpenVINO version calls the Result
    (name,) = scaled.output(0).get_names()
    assert name in model.outputs[1].get_names()


@needs_bf16
def test_bf16_keeps_the_box_geometry_f32(exported_onnx):
    guarded = load_openvino_runner(exported_onnx["raw"], OpenVinoSettings("bf16", 1))
    level, boxes = _geometry_precisions(guarded)
    assert level == {"f32"} and boxes == {"f32"}, (level, boxes)
    # the features stay bf16: the convolutions and the RoIAlign sampling them
    nodes = _exec_nodes(guarded.compiled).values()
    convolutions = [prec for kind, prec, _, _ in nodes if kind == "Convolution"]
    roi_aligns = {prec for kind, prec, _, _ in nodes if kind == ROI_ALIGN_TYPE}
    assert convolutions.count("bf16") > 0.9 * len(convolutions) and roi_aligns == {"bf16"}, (convolutions, roi_aligns)
    # what the plugin does on its own: the geometry rounded to bf16 (the reason for the module). Both
    # compiled models alive at once, as in a user's process (through two Cores this crashed a later test).
    plain = load_openvino_runner(exported_onnx["raw"], OpenVinoSettings("bf16", 1, roi_geometry="bf16"))
    level, boxes = _geometry_precisions(plain)
    assert level == {"bf16"} and boxes == {"reordered from bf16"}, (level, boxes)


@needs_bf16
def test_bf16_results_are_read_from_the_graph_outputs_only(exported_onnx):
    import cv2

    from instseg_deploy.demo_data import DEMO_DATA

    runner = load_openvino_runner(exported_onnx["raw"], OpenVinoSettings("bf16", 1))
    assert len(runner.compiled.outputs) > len(runner.outputs)  # the geometry outputs are not read
    predictor = exported_model_predictor(runner, exported_onnx["raw"], None)
    result = predictor(cv2.imread(str(DEMO_DATA / "shapes_val" / "images" / "000000.jpg")))
    assert len(result) > 0 and result.masks is not None
