"""Static TensorRT parsability (issue 20, part 3): our exports (standard, plugin, FP16, INT8 QDQ) pass
onnx-tensorrt's operator tables for TensorRT 10 and 11; an unsupported op, an unsupported input type
or a foreign custom-domain node fails by name; `instseg doctor --model` prints them and exits 1."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from instseg_deploy.cli.main import app
from instseg_deploy.data.calibration import calibration_images
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.trt.parsability import TRT_MAJORS, check, check_graph, load_table
from instseg_deploy.ops.roi_align_contract import ONNX_DOMAIN, OP_TYPE
from instseg_deploy.quantize.fp16 import convert_fp16
from instseg_deploy.quantize.qdq import quantize_int8

runner = CliRunner()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, exported_onnx, d2_dir):
    """FP16 (as `instseg quantize --fp16`) and INT8 QDQ (as `--calib`, two photos) copies of the raw export."""
    out = tmp_path_factory.mktemp("parsability")
    calib = out / "calib"
    calib.mkdir()
    for name in ("coffee.png", "det.jpg"):
        shutil.copy(d2_dir / "photos" / name, calib / name)
    fp16 = convert_fp16(exported_onnx["raw"], out / "model.fp16.onnx").path
    int8 = quantize_int8(exported_onnx["raw"], out / "model.int8.onnx", calibration_images(calib)).path
    return {"fp16": fp16, "int8": int8}


@pytest.mark.parametrize("major", TRT_MAJORS)
@pytest.mark.parametrize("flavour", ["raw", "pasted", "plugin"])
def test_our_exports_parse(exported_onnx, flavour, major):
    report = check(exported_onnx[flavour], major)
    assert report.problems == []
    assert report.nodes_checked == len(onnx.load(str(exported_onnx[flavour])).graph.node) > 0
    assert report.untyped == 0  # shape inference typed every data input, past the plugin node too
    assert (f"{ONNX_DOMAIN}::{OP_TYPE}" in report.op_counts) == (flavour == "plugin")


@pytest.mark.parametrize("major", TRT_MAJORS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_fp16_and_int8_exports_parse(converted, precision, major):
    report = check(converted[precision], major)
    assert report.problems == [] and report.nodes_checked > 0
    counts = report.op_counts
    assert counts["QuantizeLinear"] > 0 if precision == "int8" else counts["Cast"] > 0


def test_unsupported_op_in_an_export_is_reported_by_name(exported_onnx):
    proto = onnx.load(str(exported_onnx["raw"]), load_external_data=False)
    source = proto.graph.input[0].name
    proto.graph.node.append(helper.make_node("Unique", [source], ["unique_out"], name="deliberately_unique"))
    for major in TRT_MAJORS:
        assert load_table(major)["ops"]["Unique"]["supported"] is False  # the premise, from the table
        problems = check_graph(proto, major)
        assert [(p.node, p.op) for p in problems] == [("deliberately_unique", "Unique")]
        assert "unsupported op" in problems[0].reason


def _small_model(nodes, inputs, opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_input_type_custom_domain_and_opset_problems():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    model = _small_model([
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Sqrt", ["shape"], ["sqrt_of_int64"], name="sqrt_int"),  # inferred INT64: not listed
        helper.make_node("Relu", ["x"], ["r"], name="relu_ok"),
        helper.make_node("FancyOp", ["r"], ["y"], name="foreign", domain="com.example"),
    ], [x], opsets=(("", 17), ("com.example", 1)))
    problems = {p.node: p for p in check_graph(model, 10)}
    assert set(problems) == {"sqrt_int", "foreign"}
    assert "unsupported input data type INT64" in problems["sqrt_int"].reason
    assert problems["foreign"].op == "com.example::FancyOp" and "custom domain" in problems["foreign"].reason

    # Our plugin op is supported in its own domain, a wrong plugin_version is not; opset 21 is past 10's table.
    plugin = _small_model([helper.make_node(OP_TYPE, ["x"], ["y"], name="pool", domain=ONNX_DOMAIN,
                                            plugin_version="7")], [x], opsets=(("", 21), (ONNX_DOMAIN, 1)))
    problems = check_graph(plugin, 10)
    assert [(p.node, p.op) for p in problems] == [("", ""), ("pool", f"{ONNX_DOMAIN}::{OP_TYPE}")]
    assert "opset 21" in problems[0].reason and "'7'" in problems[1].reason
    assert [p.node for p in check_graph(plugin, 11)] == ["pool"]  # 11.x reaches opset 25


def test_unknown_trt_version_is_a_user_error():
    with pytest.raises(InstsegError, match="TensorRT 9"):
        check_graph(_small_model([], []), 9)


def test_doctor_model_prints_problems_and_exits_1(exported_onnx, tmp_path):
    good = runner.invoke(app, ["doctor", "--model", str(exported_onnx["plugin"])])
    assert good.exit_code == 0, good.output
    assert "TensorRT 10.x: " in good.output and "TensorRT 11.x: " in good.output
    assert "every node parses" in good.output
    # Each line names its table; 11.x's says which release notes' parser changes it carries.
    line_10, line_11 = (line for line in good.output.splitlines() if "nodes checked" in line)
    assert "release notes" not in line_10 and "parser changes of the 11.0, 11.2, 11.5 release notes" in line_11

    proto = onnx.load(str(exported_onnx["raw"]))
    proto.graph.node.append(helper.make_node("Unique", [proto.graph.input[0].name], ["u"], name="deliberately_unique"))
    bad_path = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad_path))
    bad = runner.invoke(app, ["doctor", "--model", str(bad_path), "--trt-version", "11"])
    assert bad.exit_code == 1
    assert "problem: node deliberately_unique [Unique]: unsupported op" in bad.output
    assert "TensorRT 10.x" not in bad.output

    wrong = runner.invoke(app, ["doctor", "--model", str(bad_path), "--trt-version", "9"])
    assert wrong.exit_code == 2 and "error: --trt-version" in wrong.output


def test_release_changes_are_applied_once_and_recorded():
    from instseg_deploy.export.trt.onnx_tensorrt_ops.refresh import RELEASE_CHANGES, apply_release_changes

    doc = {"opset": [9, 24], "ops": {"Swish": {"supported": False, "types": [], "notes": ""}}}
    once = apply_release_changes(json.loads(json.dumps(doc)), 11)
    twice = apply_release_changes(json.loads(json.dumps(once)), 11)
    assert once == twice and once["opset"] == [9, 25] and once["ops"]["Swish"]["supported"]
    assert [c["release"] for c in once["release_changes"]] == [c["release"] for c in RELEASE_CHANGES[11]]
    # The shipped 11.x table carries them; 10.x has none to apply.
    shipped = load_table(11)
    assert shipped["ops"]["Swish"]["supported"] and shipped["opset"] == [9, 25] and shipped["release_changes"]
    assert apply_release_changes({"opset": [9, 20], "ops": {}}, 10) == {"opset": [9, 20], "ops": {},
                                                                       "release_changes": []}
    # A Swish node (opset 24) passes at 11; at 10 both the op and the opset are reported.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    swish = _small_model([helper.make_node("Swish", ["x"], ["y"], name="swish")], [x], opsets=(("", 24),))
    assert check_graph(swish, 11) == []
    assert [p.node for p in check_graph(swish, 10)] == ["", "swish"]


def test_release_changes_never_override_a_table_of_their_release_or_later():
    from instseg_deploy.export.trt.onnx_tensorrt_ops.refresh import apply_release_changes

    real_11_2 = {"table_heading_tensorrt": "11.2", "opset": [9, 24],
                 "ops": {"GridSample": {"supported": True, "types": ["FP32"], "notes": "as the 11.2 table says"}}}
    doc = apply_release_changes(real_11_2, 11)
    assert [c["release"] for c in doc["release_changes"]] == ["11.5"]  # only what is newer than the table
    assert doc["ops"]["GridSample"]["notes"] == "as the 11.2 table says" and doc["opset"] == [9, 25]
