"""TensorRT 10.x and 11.x code paths (issue 20), on ``FakeTensorRT`` in its 10.x and 11.x flavours.

These check *our* branching only: which path the version picks, which flags, network mode and ONNX
file our code hands the builder, and the refusals. They prove nothing about TensorRT itself; the
11.x fake lacks the names NVIDIA's 10.x -> 11.x migration guide lists as removed, so our code
touching one of them fails here with AttributeError as it would on the real module.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from fake_tensorrt import REMOVED_IN_11, FakeTensorRT
from instseg_deploy.cli.main import app
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.trt import engine_export
from instseg_deploy.export.trt.engine_export import TrtExportRequest, export_trt_engine
from instseg_deploy.model_file.metadata import build_metadata, metadata_to_props
from instseg_deploy.model_file.sidecar import DeviceInfo, build_sidecar, sidecar_path, write_sidecar
from instseg_deploy.quantize.fp16 import convert_fp16
from instseg_deploy.runtime.trt.runner import load_trt_runner
from instseg_deploy.runtime.trt.util import UnsupportedTensorRT, import_tensorrt, tensorrt_api

runner = CliRunner()
V10, V11 = "10.3.0", "11.1.0"


def _model(path, nodes, initializers, tiny_config_path, precision="fp32"):
    """An ONNX file with an export's inputs, outputs and instseg metadata (standard-ops flavour)."""
    from instseg_deploy.class_names import default_class_names
    from instseg_deploy.config import load_config

    cfg = load_config(tiny_config_path)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
              helper.make_tensor_value_info("image_sizes", TensorProto.INT64, ["batch", 2])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("boxes", "scores")]
    nodes = nodes + [helper.make_node("Cast", ["image_sizes"], ["scores"], name="/Cast", to=TensorProto.FLOAT)]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    meta = build_metadata(cfg, "raw", "dynamic", "dynamic", "onnx", ["images", "image_sizes"], ["boxes", "scores"])
    for key, value in metadata_to_props({**meta, "precision": precision}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.fixture
def fp32_onnx(tmp_path, tiny_config_path):
    """One backbone-named node with an FP32 weight: what our FP16 conversion turns FP16."""
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, np.float32), "w")
    mul = helper.make_node("Mul", ["images", "w"], ["boxes"], name="/model/backbone/bottom_up/stem/Mul")
    return _model(tmp_path / "model.onnx", [mul], [weight], tiny_config_path)


@pytest.fixture
def qdq_onnx(tmp_path, tiny_config_path):
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"], name="/model/backbone/bottom_up/Q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["boxes"], name="/model/backbone/bottom_up/DQ")]
    return _model(tmp_path / "model.int8.onnx", nodes, [scale, zero], tiny_config_path, precision="int8")


@pytest.fixture
def fake_trt(monkeypatch):
    """Installs a FakeTensorRT of the given version as `tensorrt`, with an L4 as the GPU."""
    monkeypatch.setattr(engine_export, "current_device_info", lambda index=0: DeviceInfo("NVIDIA L4", "8.9"))

    def install(version):
        fake = FakeTensorRT(version=version)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return install


# ----------------------------------------------------------------------------- the version check


@pytest.mark.parametrize("version, strongly_typed", [("10.0.1.6", False), ("10.13.3.9", False), ("11.0.0", True),
                                                     ("11.4.0.post1", True)])
def test_the_version_picks_the_path(version, strongly_typed):
    api = tensorrt_api(version)
    assert api.major == int(version.split(".")[0]) and api.strongly_typed is strongly_typed


@pytest.mark.parametrize("version", ["9.3.0.1", "12.0.0", "8.6.1", "unknown"])
def test_other_versions_are_refused_with_what_to_install(version, monkeypatch):
    with pytest.raises(UnsupportedTensorRT, match=rf"TensorRT {version} is not supported: .*10.x and 11.x .*"
                                                  r'pip install "tensorrt-cu12>=10,<12"'):
        tensorrt_api(version)
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(version=version if version[0].isdigit() else "12.0"))
    with pytest.raises(UnsupportedTensorRT):  # every entry point (export, bench, the runner) imports through here
        import_tensorrt()


def test_the_runner_refuses_an_unsupported_tensorrt_before_reading_the_engine(tmp_path, fp32_onnx, monkeypatch):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    meta = json.loads(onnx.load(str(fp32_onnx)).metadata_props[0].value)
    write_sidecar(engine, build_sidecar(meta, engine_sha256="", tensorrt_version="12.0.0",
                                        device=DeviceInfo("NVIDIA L4", "8.9"), precision="fp32", builder_flags=[],
                                        int8_mode=None, profiles={}, plugin_library=None, plugin_required=False,
                                        source_onnx="m.onnx", workspace_bytes=None))
    fake = FakeTensorRT(version="12.0.0")
    fake.Runtime = lambda logger: pytest.fail("deserialisation must not be reached")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(UnsupportedTensorRT, match="TensorRT 12.0.0 is not supported"):
        load_trt_runner(engine)


def test_the_11_fake_lacks_the_removed_names_and_the_10_fake_has_them():
    """Without this the 11.x tests below would not catch our code touching a removed name."""
    for version, present in ((V10, True), (V11, False)):
        fake = FakeTensorRT(version=version)
        builder = fake.Builder(None)
        where = {"module": fake, "BuilderFlag": fake.BuilderFlag, "builder": builder,
                 "config": builder.create_builder_config()}
        for place, name in REMOVED_IN_11:
            if name in ("BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"):
                assert not hasattr(where[place], name)  # our code never uses these: absent in both fakes
                continue
            assert hasattr(where[place], name) is present, (version, place, name)
        if not present:
            with pytest.raises(AttributeError):
                where["config"].int8_calibrator = object()  # assigning fails too, as on the bindings


# ----------------------------------------------------------------------------- FP16


def _fp16_request(tmp_path, model, **kwargs):
    return TrtExportRequest(tmp_path / "out" / "model.engine", model=model, fp16=True, batch="1", size="64x64",
                            **kwargs)


def test_fp16_on_10_sets_the_builder_flag_and_parses_the_original_onnx(tmp_path, fp32_onnx, fake_trt):
    fake = fake_trt(V10)
    converted = []
    result = export_trt_engine(_fp16_request(tmp_path, fp32_onnx),
                               fp16_converter=lambda src, dst: converted.append(src))
    (build,) = fake.builds
    assert build.flags == {"FP16"} and not build.strongly_typed and fake.network_flags == [0]
    assert build.onnx_path == str(fp32_onnx) and build.weight_types == {"FLOAT"} and converted == []
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["builder_flags"] == ["FP16"] and sidecar["strongly_typed"] is False
    assert sidecar["source_onnx"] == str(fp32_onnx)


def test_fp16_on_11_builds_our_fp16_conversion_strongly_typed(tmp_path, fp32_onnx, fake_trt):
    fake = fake_trt(V11)
    result = export_trt_engine(_fp16_request(tmp_path, fp32_onnx), fp16_converter=convert_fp16)
    (build,) = fake.builds
    assert build.flags == set() and build.strongly_typed and fake.network_flags == [0]
    assert build.onnx_path.endswith("model.fp16.onnx") and build.onnx_path != str(fp32_onnx)
    assert build.weight_types == {"FLOAT16"}  # the parsed file is the converted one
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["precision"] == "fp16" and sidecar["builder_flags"] == [] and sidecar["strongly_typed"] is True
    assert sidecar["tensorrt_version"] == V11 and "converted to FP16" in sidecar["source_onnx"]
    assert sorted(p.name for p in result.engine.parent.iterdir()) == ["model.engine", "model.engine.json"]


def test_an_fp16_onnx_on_11_is_built_as_it_is(tmp_path, fp32_onnx, fake_trt):
    fake = fake_trt(V11)
    fp16 = convert_fp16(fp32_onnx, tmp_path / "model.fp16.onnx").path
    export_trt_engine(_fp16_request(tmp_path, fp16), fp16_converter=lambda src, dst: pytest.fail("converted twice"))
    (build,) = fake.builds
    assert build.onnx_path == str(fp16) and build.weight_types == {"FLOAT16"} and build.flags == set()


def test_fp16_on_11_without_a_converter_names_the_two_commands(tmp_path, fp32_onnx, fake_trt):
    fake = fake_trt(V11)
    with pytest.raises(InstsegError, match=rf"TensorRT {V11} builds FP16 only from an FP16 ONNX .*instseg quantize "
                                           rf"--model {fp32_onnx} --fp16 --out model.fp16.onnx, then instseg export"):
        export_trt_engine(_fp16_request(tmp_path, fp32_onnx))
    assert fake.builds == [] and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- INT8


def _cli_export(model, out, *extra):
    return runner.invoke(app, ["export", "--to", "trt", "--model", str(model), "--out", str(out), "--batch", "1",
                               "--size", "64x64", *extra])


def test_int8_calibration_works_on_10(tmp_path, fp32_onnx, fake_trt):
    fake = fake_trt(V10)
    result = _cli_export(fp32_onnx, tmp_path / "model.engine", "--int8", "--calib",
                         str(DEMO_DATA / "shapes_val" / "images"))
    assert result.exit_code == 0, result.output
    (build,) = fake.builds
    assert build.flags == {"INT8"} and build.calibrator_batch_size == 1 and build.calibration_profile is not None


def test_int8_calibration_on_11_is_one_error_line_naming_the_quantize_command(tmp_path, fp32_onnx, fake_trt):
    fake = fake_trt(V11)
    images = DEMO_DATA / "shapes_val" / "images"
    out = tmp_path / "model.engine"
    result = _cli_export(fp32_onnx, out, "--int8", "--calib", str(images))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: TensorRT {V11} has no implicit INT8 calibration"), lines
    assert f"instseg quantize --model {fp32_onnx} --calib --images {images} --out model.int8.onnx" in lines[0]
    assert "instseg export --to trt --model model.int8.onnx" in lines[0]
    assert fake.builds == [] and not out.exists()


@pytest.mark.parametrize("version, flags", [(V10, {"INT8"}), (V11, set())])
def test_a_qdq_model_builds_on_both(tmp_path, qdq_onnx, fake_trt, version, flags):
    fake = fake_trt(version)
    out = tmp_path / "model.engine"
    result = _cli_export(qdq_onnx, out)
    assert result.exit_code == 0, result.output
    (build,) = fake.builds
    assert build.flags == flags and build.onnx_path == str(qdq_onnx) and build.strongly_typed is (version == V11)
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["int8_mode"] == "explicit" and sidecar["builder_flags"] == sorted(flags)


def test_fp16_on_a_qdq_model_is_refused_on_11_only(tmp_path, qdq_onnx, fake_trt):
    fake = fake_trt(V11)
    result = _cli_export(qdq_onnx, tmp_path / "model.engine", "--fp16")
    assert result.exit_code == 2 and "cannot apply to a Q/DQ model" in result.output and fake.builds == []
    fake = fake_trt(V10)
    assert _cli_export(qdq_onnx, tmp_path / "model.engine", "--fp16").exit_code == 0
    assert fake.builds[0].flags == {"INT8", "FP16"}
