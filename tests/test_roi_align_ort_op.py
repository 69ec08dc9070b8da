"""The one-node InstsegMultilevelRoIAlign graph in ONNX Runtime (CPU, twin as custom op) vs torchvision."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from instseg_deploy.ops import ort_custom_op, roi_align_contract  # onnxruntime-extensions imports are lazy
from roi_align_reference import STRIDES, make_features, make_rois, reference_pool

pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions runs the op's Python custom op")
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed to build the CPU twin")

H, W = 200, 248
LEVELS = ["p2", "p3", "p4", "p5"]
ELEM = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}


def one_node_model(dtype, channels: int, **attrs) -> onnx.ModelProto:
    node = ort_custom_op.make_node("rois", LEVELS, "pooled", featmap_strides=STRIDES, name="roi_pool", **attrs)
    elem = ELEM[dtype]
    inputs = [helper.make_tensor_value_info("rois", elem, ["R", 5])]
    inputs += [helper.make_tensor_value_info(n, elem, ["N", channels, None, None]) for n in LEVELS]
    size = attrs["output_size"]
    outputs = [helper.make_tensor_value_info("pooled", elem, ["R", channels, size, size])]
    graph = helper.make_graph([node], "multilevel_roi_align", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17),
                                                    helper.make_operatorsetid(roi_align_contract.ONNX_DOMAIN, 1)])
    onnx.checker.check_model(model)
    return model


def run(model, rois, feats):
    session = ort_custom_op.create_session(model)
    return session.run(None, {"rois": rois, **dict(zip(LEVELS, feats))})[0]


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(11)


def test_node_is_what_tensorrt_parser_looks_up():
    node = one_node_model(np.float32, 4, output_size=7).graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == "InstsegMultilevelRoIAlign"
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b""
    assert attrs["featmap_strides"] == STRIDES and attrs["output_size"] == 7 and attrs["aligned"] == 1


@pytest.mark.parametrize("output_size,sampling_ratio,aligned", [(7, 0, True), (14, 2, False)])
def test_fp32_graph_matches_reference(rng, output_size, sampling_ratio, aligned):
    feats = make_features(rng, batch=2, channels=4, height=H, width=W)
    rois = make_rois(rng, 40, batch=2, height=H, width=W)
    model = one_node_model(np.float32, 4, output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned)
    out = run(model, rois, feats)
    ref = reference_pool(rois, feats, output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.max(np.abs(out - ref)) <= 1e-5


def test_fp16_graph_matches_reference(rng):
    feats = [f.astype(np.float16) for f in make_features(rng, batch=2, channels=4, height=H, width=W)]
    rois = make_rois(rng, 40, batch=2, height=H, width=W).astype(np.float16)
    out = run(one_node_model(np.float16, 4, output_size=7), rois, feats)
    ref = reference_pool(rois, feats, output_size=7)
    assert out.dtype == np.float16
    assert np.max(np.abs(out.astype(np.float32) - ref)) <= 1e-2


def test_graph_equals_twin_bit_for_bit(rng):
    from instseg_deploy.ops import multilevel_roi_align

    feats = make_features(rng, batch=1, channels=3, height=H, width=W)
    rois = make_rois(rng, 25, batch=1, height=H, width=W)
    out = run(one_node_model(np.float32, 3, output_size=14), rois, feats)
    np.testing.assert_array_equal(out, multilevel_roi_align(rois, feats, STRIDES, 14))


def test_zero_rois(rng):
    feats = make_features(rng, batch=1, channels=3, height=H, width=W)
    out = run(one_node_model(np.float32, 3, output_size=7), np.zeros((0, 5), np.float32), feats)
    assert out.shape == (0, 3, 7, 7)


def test_adaptation_keeps_the_original_model(rng):
    model = one_node_model(np.float32, 3, output_size=7)
    adapted = ort_custom_op.to_onnxruntime_model(model)
    assert model.graph.node[0].domain == roi_align_contract.ONNX_DOMAIN
    op = next(n for n in adapted.graph.node if n.op_type == roi_align_contract.OP_TYPE)
    assert op.domain == ort_custom_op.ORT_DOMAIN
    strides = next(a for a in op.attribute if a.name == "featmap_strides")
    assert helper.get_attribute_value(strides) == b"4,8,16,32"
