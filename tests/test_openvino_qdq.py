"""The Q/DQ layout pass OpenVINO reads an INT8 file through (runtime.openvino_qdq): one pair per
quantized tensor, float consumers left on the float tensor, values unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from instseg_deploy.model_file.onnx_edit import consumers_of
from instseg_deploy.quantize.qdq_layout import dedicate_qdq_pairs
from instseg_deploy.runtime.openvino_qdq import drop_float_only_output_pairs, share_qdq_pairs

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _residual_block(second_scale: float | None = None) -> onnx.ModelProto:
    """x -> Relu -> r -> one Q/DQ pair read by two 1x1 convs, a residual Add and a Resize, as
    ``onnxruntime.quantization`` writes it; with ``second_scale``, conv_b has its own pair of that
    scale and the Add and Resize read the float r."""
    rng = np.random.default_rng(0)
    inits = [_const("s", np.float32(0.05)), _const("z", np.int8(0)),
             _const("w_a", rng.normal(size=(4, 4, 1, 1)).astype(np.float32)),
             _const("w_b", rng.normal(size=(4, 4, 1, 1)).astype(np.float32)),
             _const("scales", np.array([1, 1, 2, 2], np.float32))]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["r_q"], name="q"),
        helper.make_node("DequantizeLinear", ["r_q", "s", "z"], ["r_dq"], name="dq"),
        helper.make_node("Conv", ["r_dq", "w_a"], ["a"], name="conv_a"),
        helper.make_node("Conv", ["r_dq", "w_b"], ["b"], name="conv_b"),
        helper.make_node("Add", ["a", "r_dq"], ["sum"], name="residual"),
        helper.make_node("Resize", ["r_dq", "", "scales"], ["up"], name="upsample", mode="nearest"),
    ]
    if second_scale is not None:
        inits.append(_const("s2", np.float32(second_scale)))
        nodes[3:3] = [helper.make_node("QuantizeLinear", ["r", "s2", "z"], ["r_q2"], name="q2"),
                      helper.make_node("DequantizeLinear", ["r_q2", "s2", "z"], ["r_dq2"], name="dq2")]
        for node in nodes:
            if node.name == "conv_b":
                node.input[0] = "r_dq2"
            if node.name in ("residual", "upsample"):
                node.input[[*node.input].index("r_dq")] = "r"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
            for n, shape in (("b", [1, 4, 3, 3]), ("sum", [1, 4, 3, 3]), ("up", [1, 4, 6, 6]))]
    return helper.make_model(helper.make_graph(nodes, "block", [x], outs, inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def nodes_named(model: onnx.ModelProto) -> dict:
    return {n.name: n for n in model.graph.node}


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_equal_pairs_merge_and_float_consumers_stay_float():
    model = _residual_block()
    dedicate_qdq_pairs(model)  # ONNX Runtime's layout: pairs a few ulps apart, float Add / Resize
    x = np.random.default_rng(1).normal(size=(1, 4, 3, 3)).astype(np.float32)
    before = _run(model, x)
    assert nodes_named(model)["residual"].input[1] == "r"  # ONNX Runtime's layout as a precondition
    assert share_qdq_pairs(model) == 1  # conv_b's dedicated copy
    onnx.checker.check_model(model)
    nodes = nodes_named(model)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 1
    (dq_out,) = [n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert nodes["conv_a"].input[0] == nodes["conv_b"].input[0] == dq_out
    assert nodes["residual"].input[1] == "r" and nodes["upsample"].input[0] == "r"
    after = _run(model, x)
    # conv_b: the same integers, dequantized with the kept scale instead of its copy one ulp above.
    np.testing.assert_allclose(after[0], before[0], rtol=4 * np.finfo(np.float32).eps, atol=1e-7)
    np.testing.assert_array_equal(after[1], before[1])  # the residual Add and the Resize still read r
    np.testing.assert_array_equal(after[2], before[2])


def test_different_quantizers_and_graph_outputs_are_left_alone():
    model = _residual_block(second_scale=0.1)
    assert share_qdq_pairs(model) == 0
    nodes = nodes_named(model)
    assert nodes["conv_b"].input[0] == "r_dq2" and nodes["conv_a"].input[0] == "r_dq"
    # A DQ that is itself a graph output is never merged away.
    model = _residual_block(second_scale=0.05)
    model.graph.output.append(helper.make_tensor_value_info("r_dq2", TensorProto.FLOAT, [1, 4, 3, 3]))
    assert share_qdq_pairs(model) == 0
    assert {n.name for n in model.graph.node} >= {"q2", "dq2"}
    assert consumers_of(model.graph)["r_dq2"][0].name == "conv_b"


def _conv_chain() -> onnx.ModelProto:
    """conv1 (int8: DQ'd input and weights) -> Q/DQ -> Relu -> Q/DQ -> conv2 (int8) -> Q/DQ -> head
    (float weights), as ONNX Runtime's QDQ writes it: every quantized layer's output gets a pair."""
    rng = np.random.default_rng(2)
    inits = [_const("s", np.float32(0.05)), _const("z", np.int8(0)), _const("ws", np.full(4, 0.02, np.float32)),
             _const("wz", np.zeros(4, np.int8)),
             _const("w1", rng.integers(-50, 50, size=(4, 4, 1, 1)).astype(np.int8)),
             _const("w2", rng.integers(-50, 50, size=(4, 4, 1, 1)).astype(np.int8)),
             _const("w_head", rng.normal(size=(2, 4, 1, 1)).astype(np.float32))]

    def qdq(name: str) -> list:
        return [helper.make_node("QuantizeLinear", [name, "s", "z"], [f"{name}_q"], name=f"{name}_Q"),
                helper.make_node("DequantizeLinear", [f"{name}_q", "s", "z"], [f"{name}_dq"], name=f"{name}_DQ")]

    nodes = [*qdq("x"),
             helper.make_node("DequantizeLinear", ["w1", "ws", "wz"], ["w1_dq"], name="w1_DQ", axis=0),
             helper.make_node("DequantizeLinear", ["w2", "ws", "wz"], ["w2_dq"], name="w2_DQ", axis=0),
             helper.make_node("Conv", ["x_dq", "w1_dq"], ["c1"], name="conv1"), *qdq("c1"),
             helper.make_node("Relu", ["c1_dq"], ["r1"], name="relu"), *qdq("r1"),
             helper.make_node("Conv", ["r1_dq", "w2_dq"], ["c2"], name="conv2"), *qdq("c2"),
             helper.make_node("Conv", ["c2_dq", "w_head"], ["y"], name="head")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])
    return helper.make_model(helper.make_graph(nodes, "chain", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_output_pairs_only_float_layers_read_are_dropped():
    model = _conv_chain()
    x = np.random.default_rng(3).normal(size=(1, 4, 3, 3)).astype(np.float32)
    before = _run(model, x)[0]
    # conv1's output pair (read by Relu) and conv2's (read by the float head) go; the pairs on the
    # integer layers' inputs (x, r1) and the weights' stay.
    assert drop_float_only_output_pairs(model) == 2
    onnx.checker.check_model(model)
    nodes = nodes_named(model)
    assert nodes["relu"].input[0] == "c1" and nodes["head"].input[0] == "c2"
    assert nodes["conv1"].input[0] == "x_dq" and nodes["conv2"].input[0] == "r1_dq"
    assert not {"c1_Q", "c1_DQ", "c2_Q", "c2_DQ"} & set(nodes)
    after = _run(model, x)[0]
    # r1 is quantized on the same grid either way (Relu commutes with rounding to it), so only the head
    # moves: it now reads conv2's float output, off by at most its weights times half a step.
    bound = np.abs(numpy_helper.to_array(model.graph.initializer[-1])).sum(axis=(1, 2, 3)).max() * 0.05 / 2
    assert 0 < np.abs(after - before).max() <= bound + 1e-5
    assert drop_float_only_output_pairs(model) == 0  # nothing left to drop


def test_output_pairs_an_integer_layer_or_the_graph_reads_are_kept():
    model = _conv_chain()
    # conv2 reads conv1's output pair directly (no Relu between): that pair feeds an integer layer.
    nodes = nodes_named(model)
    nodes["conv2"].input[0] = "c1_dq"
    model.graph.node.remove(nodes["r1_Q"])
    model.graph.node.remove(nodes["r1_DQ"])
    model.graph.node.remove(nodes["relu"])
    model.graph.output.append(helper.make_tensor_value_info("c2_dq", TensorProto.FLOAT, [1, 4, 3, 3]))
    assert drop_float_only_output_pairs(model) == 0  # c1's pair feeds conv2, c2's DQ is a graph output
    assert {"c1_Q", "c1_DQ", "c2_Q", "c2_DQ"} <= set(nodes_named(model))


def test_openvino_reads_a_qdq_file_in_its_layout_and_leaves_the_file_alone(tmp_path):
    """read_openvino_model on a Q/DQ ONNX: OpenVINO gets the shared, dropped layout (fewer
    FakeQuantize than the file as written), the caller's ModelProto is unchanged, results agree."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    from pathlib import Path

    from instseg_deploy.runtime.openvino import read_openvino_model, shared_core

    model = _conv_chain()
    path = tmp_path / "chain.onnx"
    onnx.save(model, str(path))
    before = model.SerializeToString()
    core = shared_core()
    as_written = core.read_model(str(path))
    laid_out = read_openvino_model(core, Path(path), model)
    assert model.SerializeToString() == before

    def fake_quantizes(m) -> int:
        return sum(op.get_type_name() == "FakeQuantize" for op in m.get_ops())

    assert fake_quantizes(as_written) == 4 and fake_quantizes(laid_out) == 2  # c1's and c2's output pairs gone
    x = np.random.default_rng(4).normal(size=(1, 4, 3, 3)).astype(np.float32)
    expected = _run(model, x)[0]
    got = core.compile_model(laid_out, "CPU")({"x": x})[0]
    assert np.abs(got - expected).max() <= 0.05  # the head reads conv2's float output instead of its int8 copy
