"""--backend openvino and export --to openvino on the CPU: parity with ONNX Runtime, the IR's metadata,
one-line errors for broken files, and the precision fallback."""

from __future__ import annotations

import json
import logging

import cv2
import pytest
from typer.testing import CliRunner

from instseg_deploy.cli.main import app
from instseg_deploy.cpu_isa import CpuIsa, cpu_isa, parse_cpuinfo
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import InstsegError
from instseg_deploy.evaluation.parity import match_detections
from instseg_deploy.model_file.metadata import METADATA_KEY
from instseg_deploy.model_file.reader import read_model_file
from instseg_deploy.runtime.factory import load_predictor

ov = pytest.importorskip("openvino", reason="openvino is not installed")

runner = CliRunner()


@pytest.fixture(scope="module")
def fixture_export(tmp_path_factory, exported_onnx):
    """The detectron2-trained fixture model's standard-ops export as ONNX and as IR. (A model with
    random weights is no parity test: its near-equal scores let NMS flip on the last bit.)"""
    from instseg_deploy.export.openvino_ir import export_openvino_ir

    out = tmp_path_factory.mktemp("ov")
    ir = export_openvino_ir(exported_onnx["raw"], out / "ir" / "fixture.xml")
    return {"onnx": exported_onnx["raw"], "xml": ir.xml}


@pytest.fixture(scope="module")
def images():
    return [cv2.imread(str(DEMO_DATA / "shapes_val" / "images" / f"00000{i}.jpg")) for i in range(3)]


@pytest.mark.parametrize("source", ["onnx", "xml"])
def test_openvino_f32_matches_onnx_runtime(fixture_export, images, source):
    # the file's own threshold: every detection of either backend must have its twin in the other
    ort = load_predictor("ort", model=fixture_export["onnx"], threads=1, score_thresh=None)
    openvino = load_predictor("openvino", model=fixture_export[source], precision="f32", threads=1,
                              score_thresh=None)
    assert openvino.runner.precision == "f32"
    for reference, candidate in zip(ort.predict(images), openvino.predict(images)):
        assert len(reference) > 0
        report = match_detections(reference, candidate, min_box_iou=0.99, max_score_diff=1e-3)
        assert report.match_rate == 1.0, report


def test_ir_keeps_the_exports_metadata(fixture_export):
    onnx_meta = read_model_file(fixture_export["onnx"]).metadata
    ir = read_model_file(fixture_export["xml"])
    assert ir.format == "openvino" and ir.metadata == onnx_meta
    # f32 weights (OpenVINO's save_model would halve them to f16 by default)
    assert fixture_export["xml"].with_suffix(".bin").stat().st_size > 0.9 * fixture_export["onnx"].stat().st_size
    assert sorted(p.name for p in fixture_export["xml"].parent.iterdir()) == ["fixture.bin", "fixture.xml"]


def test_export_to_openvino_from_the_cli(fixture_export, tmp_path):
    out = tmp_path / "model.xml"
    result = runner.invoke(app, ["export", "--to", "openvino", "--model", str(fixture_export["onnx"]),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "model.bin" in result.output and read_model_file(out).metadata["num_classes"] == 4


@pytest.mark.parametrize("damage", ["truncated bin", "broken xml", "no bin", "no metadata"])
def test_broken_ir_is_one_error_line(fixture_export, tmp_path, damage):
    xml, weights = tmp_path / "m.xml", tmp_path / "m.bin"
    text = fixture_export["xml"].read_text()
    data = fixture_export["xml"].with_suffix(".bin").read_bytes()
    if damage == "truncated bin":
        xml.write_text(text)
        weights.write_bytes(data[: len(data) // 3])
    elif damage == "broken xml":
        xml.write_text(text[: len(text) // 2])
        weights.write_bytes(data)
    elif damage == "no bin":
        xml.write_text(text)
    else:
        while f"<{METADATA_KEY} " in text:  # ours, and the copy OpenVINO keeps of the ONNX metadata_props
            start = text.index(f"<{METADATA_KEY} ")
            text = text[:start] + text[text.index("/>", start) + 2:]
        xml.write_text(text)
        weights.write_bytes(data)
    image = DEMO_DATA / "shapes_val" / "images" / "000000.jpg"
    result = runner.invoke(app, ["predict", str(image), "--backend", "openvino", "--model", str(xml),
                                 "--out", str(tmp_path / "pred")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    expected = {"truncated bin": "OpenVINO cannot", "broken xml": "not a readable OpenVINO IR",
                "no bin": "m.bin is missing", "no metadata": "no instseg metadata"}[damage]
    assert expected in result.output


def test_bf16_without_native_bf16_says_what_it_runs(fixture_export, monkeypatch, caplog):
    from instseg_deploy.runtime import openvino as backend

    monkeypatch.setattr(backend, "cpu_capabilities", lambda core: ("FP32", "INT8", "BIN"))
    with caplog.at_level(logging.WARNING, logger="instseg_deploy"):
        predictor = load_predictor("openvino", model=fixture_export["onnx"], precision="bf16", threads=1)
    assert predictor.runner.precision == "f32"
    assert "bf16 requested, but this CPU has no native BF16" in caplog.text and "running f32" in caplog.text
    assert backend.resolve_precision("bf16", ("BF16", "FP32"), cpu_isa()) == "bf16"


def _isa(flags: str):
    return parse_cpuinfo(f"model name\t: a CPU\nflags\t\t: {flags}\n")


AVX512_BF16 = "avx2 fma avx512f avx512_vnni avx512_bf16"


@pytest.mark.parametrize("flags, capabilities, expected", [
    (AVX512_BF16, ("BF16", "FP32", "INT8"), "bf16"),  # where bf16 was measured within 0.2 AP of f32
    (AVX512_BF16 + " amx_tile amx_bf16 amx_int8", ("BF16", "FP32", "INT8"), "f32"),  # AMX: not measured yet
    (AVX512_BF16, ("FP32", "INT8"), "f32"),  # the plugin computes no bf16 (e.g. an older OpenVINO)
    ("avx2 fma", ("FP32", "INT8"), "f32"),
])
def test_auto_precision_is_bf16_only_where_measured(flags, capabilities, expected):
    from instseg_deploy.runtime import openvino as backend

    assert backend.resolve_precision("auto", capabilities, _isa(flags)) == expected
    assert backend.resolve_precision("f32", capabilities, _isa(flags)) == "f32"


def test_auto_precision_without_a_known_isa_is_f32():
    from instseg_deploy.runtime import openvino as backend

    assert backend.auto_precision(("BF16", "FP32"), CpuIsa("unknown", None)) == "f32"


def test_auto_on_an_fp32_export_compiles_what_auto_precision_says(fixture_export):
    from instseg_deploy.runtime import openvino as backend

    predictor = load_predictor("openvino", model=fixture_export["onnx"], threads=1)
    core = backend.shared_core()
    assert predictor.runner.precision == backend.auto_precision(backend.cpu_capabilities(core), cpu_isa())


def test_plugin_flavour_and_engines_are_refused(tmp_path, exported_onnx):
    with pytest.raises(InstsegError, match="plugin node, which is TensorRT's"):
        load_predictor("openvino", model=exported_onnx["plugin"])
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    (tmp_path / "m.engine.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(InstsegError):
        load_predictor("openvino", model=engine)


def test_bad_settings(fixture_export):
    with pytest.raises(InstsegError, match="--precision 'fp8'"):
        load_predictor("openvino", model=fixture_export["onnx"], precision="fp8")
    with pytest.raises(InstsegError, match="--hint 'fast'"):
        load_predictor("openvino", model=fixture_export["onnx"], hint="fast")


def test_every_openvino_path_shares_one_core(fixture_export, tmp_path, monkeypatch):
    """A second ``openvino.Core`` in one process corrupted the interpreter's heap (a later test crashed with
    SIGSEGV, every time): loading, exporting, serving, doctor and bench all go through ``shared_core``.
    The trap that replaces ``openvino.Core`` only checks our own calls; it creates no Core."""
    from instseg_deploy.bench.flops import measure_openvino_peak
    from instseg_deploy.bench.run import BenchRequest, _openvino_rows
    from instseg_deploy.cli.doctor import probe_environment
    from instseg_deploy.export.openvino_ir import export_openvino_ir
    from instseg_deploy.model_file.reader import read_model_file
    from instseg_deploy.runtime.openvino import OpenVinoSettings, load_openvino_runner, shared_core
    from instseg_deploy.serving.triton.openvino_net import write_served_ir

    def second_core(*args):
        raise AssertionError("a second openvino.Core was made")

    core = shared_core()
    monkeypatch.setattr(ov, "Core", second_core)
    first = load_openvino_runner(fixture_export["onnx"], OpenVinoSettings("f32", 1, cache=False))
    second = load_openvino_runner(fixture_export["xml"], OpenVinoSettings("f32", 1, cache=False))
    xml = export_openvino_ir(fixture_export["onnx"], tmp_path / "again.xml").xml
    write_served_ir(read_model_file(xml), tmp_path / "served")
    assert probe_environment(gpu_probe=lambda: False).openvino_capabilities
    assert _openvino_rows(BenchRequest(backends=("openvino",), precisions=("auto",)), fixture_export["onnx"])
    assert measure_openvino_peak("f32", threads=1, size=64, repeats=1).gflops
    assert shared_core() is core
    del first, second
