"""TensorRT engines and backend (issue 9).

Three kinds of tests:

* Plain Python around TensorRT, run everywhere: profile resolution from the CLI flags, precision
  mapping, the engine sidecar and its mismatch checks, plugin-library discovery, batch fitting,
  ONNX Runtime's TensorRT EP options, `instseg doctor`, and the clean failure of
  `instseg export --to trt` on a machine without TensorRT.
* Our wiring against ``FakeTensorRT``, a stand-in module that records what we ask TensorRT 10 for
  (profile shapes per input, builder flags, timing cache, calibrator). It checks *our* calls and
  error handling only; it proves nothing about TensorRT itself -- the real API names were checked
  against TensorRT's bindings and docs.
* TensorRT-bound tests (engine builds, parity with ONNX Runtime, AP), skipped with their reason
  where TensorRT or a CUDA GPU is missing.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from fake_tensorrt import FakeRegistry, FakeTensorRT
from instseg_deploy.cli import doctor as doctor_cli
from instseg_deploy.cli.main import app
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.trt import engine_export
from instseg_deploy.export.trt.builder import BuildRequest, build_engine
from instseg_deploy.export.trt.calibrator import calibration_batches, calibration_range
from instseg_deploy.export.trt.engine_export import TrtExportRequest, export_trt_engine
from instseg_deploy.export.trt.precision import PrecisionPlan, is_qdq_model, resolve_precision
from instseg_deploy.model_file.metadata import build_metadata, metadata_to_props
from instseg_deploy.model_file.reader import read_model_file
from instseg_deploy.model_file.sidecar import (
    DeviceInfo,
    EngineMismatch,
    build_sidecar,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from instseg_deploy.ops.roi_align_contract import ONNX_DOMAIN, OP_TYPE
from instseg_deploy.processing.preprocess import Batch, padded_shape, resized_shape
from instseg_deploy.runtime.trt import plugin_library as trt_plugin_lib
from instseg_deploy.runtime.trt import sidecar as trt_sidecar
from instseg_deploy.runtime.trt import util as trt_util
from instseg_deploy.runtime.trt.plugin_library import PluginLibrary, PluginLibraryError, find_plugin_library
from instseg_deploy.runtime.trt.profiles import ShapeRange, default_size_range, input_profiles, resolve_image_range
from instseg_deploy.runtime.trt.runner import fit_to_profile, load_trt_runner
from instseg_deploy.runtime.trt.sidecar import check_sidecar
from instseg_deploy.runtime.trt.util import device_index, torch_dtype

runner = CliRunner()
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_GPU = torch.cuda.is_available()
NO_TRT = "TensorRT is not installed"


def meta_for(min_size=800, max_size=1333, divisibility=32, batch="dynamic", size="dynamic",
             inputs=("images", "image_sizes"), precision="fp32"):
    """Metadata shaped like an export's (only the fields the TensorRT code reads matter)."""
    return {"format_version": 1, "class_names": ["a", "b"], "num_classes": 2,
            "preprocess": {"input_format": "BGR", "min_size": min_size, "max_size": max_size,
                           "pixel_mean": [103.53, 116.28, 123.675], "pixel_std": [1.0, 1.0, 1.0],
                           "size_divisibility": divisibility},
            "postprocess": {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_image": 100,
                            "mask_threshold": 0.5, "masks": "raw"},
            "batch": batch, "size": size, "roi_align": "plugin", "precision": precision,
            "inputs": list(inputs), "outputs": ["boxes", "scores", "classes", "batch_idx", "mask_probs"]}


# ----------------------------------------------------------------------------- profiles


def test_default_profile_covers_every_image_the_preprocessing_can_produce():
    meta = meta_for()
    r = resolve_image_range(meta)
    assert r == ShapeRange((1, 3, 32, 32), (1, 3, 800, 1088), (8, 3, 1344, 1344))
    rng = np.random.default_rng(0)
    for h, w in rng.integers(8, 6000, size=(2000, 2)):  # portrait, landscape, extreme aspect ratios
        rh, rw = resized_shape(int(h), int(w), 800, 1333)
        ph, pw = padded_shape(np.array([[rh, rw]]), 32)
        assert r.min[2] <= ph <= r.max[2] and r.min[3] <= pw <= r.max[3], (h, w)


def test_default_size_range_follows_the_models_preprocessing():
    assert default_size_range(meta_for(min_size=320, max_size=448)) == ((32, 32), (320, 448), (448, 448))
    assert default_size_range(meta_for(min_size=256, max_size=448)) == ((32, 32), (256, 352), (448, 448))


def test_batch_and_size_ranges_from_flags():
    r = resolve_image_range(meta_for(), batch="1:4:8", size="320x320:800x1088:1344x1344")
    assert r == ShapeRange((1, 3, 320, 320), (4, 3, 800, 1088), (8, 3, 1344, 1344))
    fixed = resolve_image_range(meta_for(), batch="2", size="800x1088")
    assert fixed.min == fixed.opt == fixed.max == (2, 3, 800, 1088)


def test_explicit_min_opt_max_shapes():
    r = resolve_image_range(meta_for(), min_shape="1x3x64x64", opt_shape="2x3x640x640", max_shape="4x3x1024x1024")
    assert r == ShapeRange((1, 3, 64, 64), (2, 3, 640, 640), (4, 3, 1024, 1024))


def test_a_fixed_shape_onnx_model_keeps_its_shape():
    r = resolve_image_range(meta_for(batch=2, size=[640, 640]))
    assert r.min == r.opt == r.max == (2, 3, 640, 640)
    with pytest.raises(InstsegError, match="fixed batch of 2"):
        resolve_image_range(meta_for(batch=2, size=[640, 640]), batch="1:2:4")
    with pytest.raises(InstsegError, match="fixed input size 640x640"):
        resolve_image_range(meta_for(size=[640, 640]), size="640x640:640x640:800x800")


@pytest.mark.parametrize("kwargs, message", [
    ({"min_shape": "1x3x64x64"}, "go together"),
    ({"min_shape": "1x3x64x64", "opt_shape": "1x3x64x64", "max_shape": "1x3x64x64", "batch": "2"}, "not both"),
    ({"min_shape": "1x1x64x64", "opt_shape": "1x1x64x64", "max_shape": "1x1x64x64"}, "Nx3xHxW"),
    ({"min_shape": "1x3x64", "opt_shape": "1x3x64", "max_shape": "1x3x64"}, "Nx3xHxW"),
    ({"min_shape": "1x3x64x64", "opt_shape": "1x3xbigx64", "max_shape": "1x3x64x64"}, "joined by 'x'"),
    ({"batch": "1:8"}, "MIN:OPT:MAX"),
    ({"batch": "0"}, "positive"),
    ({"batch": "4:2:8"}, "min <= opt <= max"),
    ({"size": "800x1100"}, "multiple of 32.*800x1120"),
    ({"size": "800"}, "HxW"),
    ({"size": "0x32"}, "positive"),
])
def test_bad_profile_flags_give_one_clear_error(kwargs, message):
    with pytest.raises(InstsegError, match=message):
        resolve_image_range(meta_for(), **kwargs)


def test_input_profiles_cover_the_size_inputs_the_graph_has():
    r = ShapeRange((1, 3, 32, 32), (2, 3, 800, 1088), (8, 3, 1344, 1344))
    profiles = input_profiles(r, ["images", "image_sizes"])
    assert profiles["image_sizes"] == ShapeRange((1, 2), (2, 2), (8, 2)) and "original_sizes" not in profiles
    pasted = input_profiles(r, ["images", "image_sizes", "original_sizes"])
    assert pasted["original_sizes"] == ShapeRange((1, 2), (2, 2), (8, 2))
    with pytest.raises(InstsegError, match="not an instseg export"):
        input_profiles(r, ["input"])


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("fp16, int8, calib, qdq, expected", [
    (False, False, None, False, PrecisionPlan("fp32", (), None)),
    (True, False, None, False, PrecisionPlan("fp16", ("FP16",), None)),
    (False, True, "calib/", False, PrecisionPlan("int8", ("INT8",), "calibration")),
    (True, True, "calib/", False, PrecisionPlan("int8", ("INT8", "FP16"), "calibration")),
    (False, False, None, True, PrecisionPlan("int8", ("INT8",), "explicit")),  # a Q/DQ model implies INT8
    (True, True, None, True, PrecisionPlan("int8", ("INT8", "FP16"), "explicit")),
])
def test_precision_flags(fp16, int8, calib, qdq, expected):
    assert resolve_precision(fp16, int8, calib, qdq) == expected


@pytest.mark.parametrize("fp16, int8, calib, qdq, message", [
    (False, True, None, False, "needs a quantized model .* or --calib"),
    (False, False, "calib/", False, "--calib is used with --int8"),
    (False, True, "calib/", True, "already quantized"),
])
def test_precision_flag_errors(fp16, int8, calib, qdq, message):
    with pytest.raises(InstsegError, match=message):
        resolve_precision(fp16, int8, calib, qdq)


def test_qdq_models_are_recognised_by_nodes_or_metadata():
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [], []))
    qdq = helper.make_model(helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s"], ["y"])], "g", [], []))
    assert not is_qdq_model(plain, meta_for())
    assert is_qdq_model(qdq, meta_for())
    assert is_qdq_model(plain, meta_for(precision="int8"))


def test_calibration_runs_at_the_smallest_batch_and_largest_size():
    r = calibration_range(ShapeRange((1, 3, 32, 32), (4, 3, 800, 1088), (8, 3, 1344, 1344)))
    assert r.min == r.opt == r.max == (1, 3, 1344, 1344)


# ----------------------------------------------------------------------------- sidecar


def _sidecar_for(engine: Path, version="10.3.0", cc="8.9", name="NVIDIA L4") -> dict:
    return build_sidecar(meta_for(), engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest(),
                         tensorrt_version=version, device=DeviceInfo(name, cc), precision="fp16",
                         builder_flags=["FP16"], int8_mode=None,
                         profiles={"images": {"min": [1, 3, 32, 32], "opt": [1, 3, 800, 1088],
                                              "max": [8, 3, 1344, 1344]}},
                         plugin_library="/opt/libinstseg_plugins.so", plugin_required=True,
                         source_onnx="model.onnx", workspace_bytes=None)


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")
    path = write_sidecar(engine, _sidecar_for(engine))
    assert path == tmp_path / "model.engine.json" == sidecar_path(engine)
    sidecar = read_sidecar(engine)
    assert sidecar["metadata"]["precision"] == "fp16"  # the engine's precision, not the ONNX model's
    assert sidecar["metadata"]["class_names"] == ["a", "b"] and sidecar["tensorrt_version"] == "10.3.0"
    assert sidecar["device"] == {"name": "NVIDIA L4", "compute_capability": "8.9"}
    assert sidecar["plugin_library"] == {"required": True, "path": "/opt/libinstseg_plugins.so", "sha256": None}
    assert check_sidecar(sidecar, engine, "10.3.0.26", DeviceInfo("NVIDIA L4", "8.9")) == []


def test_sidecar_refuses_another_tensorrt_version(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    sidecar = _sidecar_for(engine)
    with pytest.raises(EngineMismatch, match=r"built with TensorRT 10\.3\.0 but this is TensorRT 10\.8\.0.*rebuild"):
        check_sidecar(sidecar, engine, "10.8.0", DeviceInfo("NVIDIA L4", "8.9"))


def test_sidecar_refuses_another_compute_capability_and_warns_for_another_gpu_model(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    sidecar = _sidecar_for(engine)
    with pytest.raises(EngineMismatch, match=r"compute capability 8\.9 \(NVIDIA L4\) but this GPU is 9\.0"):
        check_sidecar(sidecar, engine, "10.3.0", DeviceInfo("NVIDIA H100", "9.0"))
    warnings = check_sidecar(sidecar, engine, "10.3.0", DeviceInfo("NVIDIA RTX 4090", "8.9"))
    assert len(warnings) == 1 and "NVIDIA RTX 4090" in warnings[0]


def test_sidecar_refuses_an_engine_it_does_not_describe(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    sidecar = _sidecar_for(engine)
    engine.write_bytes(b"another engine")
    with pytest.raises(EngineMismatch, match="not the engine its sidecar"):
        check_sidecar(sidecar, engine, "10.3.0", DeviceInfo("NVIDIA L4", "8.9"))


def test_missing_or_broken_sidecar(tmp_path):
    engine = tmp_path / "model.engine"
    with pytest.raises(InstsegError, match="engine file not found"):
        read_sidecar(engine)
    engine.write_bytes(b"x")
    with pytest.raises(EngineMismatch, match="model.engine.json is missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineMismatch, match="not valid JSON"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format_version": 99, "metadata": {}, "tensorrt_version": "10"}))
    with pytest.raises(EngineMismatch, match="newer instseg-deploy"):
        read_sidecar(engine)


def test_no_tensorrt_is_one_clear_error_that_says_what_it_needs(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # import tensorrt -> ImportError
    needs = "TensorRT needs an NVIDIA GPU with CUDA and the TensorRT Python package, pip install \"tensorrt-cu12"
    with pytest.raises(trt_util.TensorRTUnavailable) as with_gpu:
        trt_util.import_tensorrt(gpu_found=lambda: True)
    assert str(with_gpu.value).startswith(f"TensorRT is not installed: {needs}")
    with pytest.raises(trt_util.TensorRTUnavailable) as without_gpu:
        trt_util.import_tensorrt(gpu_found=lambda: False)
    assert str(without_gpu.value).startswith(f"TensorRT is not installed, and this machine has no NVIDIA GPU: {needs}")


@pytest.mark.skipif(HAVE_GPU, reason="checks the message on machines without a CUDA GPU")
def test_no_gpu_is_one_clear_error():
    with pytest.raises(trt_util.TensorRTUnavailable, match="no CUDA GPU"):
        trt_sidecar.current_device_info()


# ----------------------------------------------------------------------------- plugin library


def test_plugin_library_search_order(tmp_path):
    """The order; which library a sidecar may name is tests/test_plugin_library_policy.py's."""
    explicit, from_env, default = (tmp_path / f"{n}.so" for n in ("explicit", "env", "default"))
    for p in (explicit, from_env, default):
        p.write_bytes(b"")
    env = {"INSTSEG_PLUGIN_LIB": str(from_env)}
    assert find_plugin_library(explicit, env, default) == PluginLibrary(explicit, "--plugin-lib")
    assert find_plugin_library(None, env, default) == PluginLibrary(from_env, "INSTSEG_PLUGIN_LIB")
    assert find_plugin_library(None, {}, default) == PluginLibrary(default, "plugins/build")


def test_plugin_library_errors_name_the_path_and_the_build_command(tmp_path):
    with pytest.raises(PluginLibraryError, match="--plugin-lib .*nope.so does not exist"):
        find_plugin_library(tmp_path / "nope.so", {}, tmp_path / "default.so")
    with pytest.raises(PluginLibraryError, match="INSTSEG_PLUGIN_LIB=.*gone.so does not exist"):
        find_plugin_library(None, {"INSTSEG_PLUGIN_LIB": str(tmp_path / "gone.so")}, tmp_path / "default.so")
    with pytest.raises(PluginLibraryError) as e:
        find_plugin_library(None, {}, tmp_path / "default.so")
    assert "libinstseg_plugins.so was not found" in str(e.value) and "cmake -S plugins -B plugins/build" in str(e.value)
    path, reason = trt_plugin_lib.describe_plugin_library({}, tmp_path / "default.so")
    assert path is None and "cmake" in reason


@pytest.mark.parametrize("registry, loads, error", [
    (FakeRegistry(), 1, None),
    (FakeRegistry(registered=True), 0, None),  # already registered: loading again would fail in TensorRT
    (FakeRegistry(load_ok=False), 1, "could not load"),
    (FakeRegistry(registers=False), 1, "registers no InstsegMultilevelRoIAlign"),
])
def test_loading_the_plugin_library_wiring(registry, loads, error):
    fake = types.SimpleNamespace(get_plugin_registry=lambda: registry)
    library = PluginLibrary(Path("/opt/libinstseg_plugins.so"), "--plugin-lib")
    if error:
        with pytest.raises(PluginLibraryError, match=error):
            trt_plugin_lib.load_plugin_library(fake, library)
    else:
        trt_plugin_lib.load_plugin_library(fake, library)
    assert registry.loaded == ["/opt/libinstseg_plugins.so"] * loads


# ----------------------------------------------------------------------------- runner pieces


def test_fit_to_profile_grows_small_batches_and_images_with_the_pixel_mean():
    mean = (103.53, 116.28, 123.675)
    images = np.full((1, 3, 64, 96), 7.0, np.float32)
    batch = Batch(images, np.array([[60, 90]]), np.array([[120, 180]]))
    feeds = fit_to_profile(batch, ShapeRange((2, 3, 128, 128), (2, 3, 128, 128), (4, 3, 512, 512)), mean,
                           ["images", "image_sizes"])
    assert set(feeds) == {"images", "image_sizes"}
    assert feeds["images"].shape == (2, 3, 128, 128)
    assert (feeds["images"][0, :, :64, :96] == 7).all()
    assert np.allclose(feeds["images"][0, :, 64:, :], np.array(mean, np.float32)[:, None, None])
    assert np.allclose(feeds["images"][1], np.array(mean, np.float32)[:, None, None])
    assert feeds["image_sizes"].tolist() == [[60, 90], [32, 32]]
    same = fit_to_profile(batch, ShapeRange((1, 3, 32, 32), (1, 3, 64, 96), (4, 3, 512, 512)), mean,
                          ["images", "image_sizes", "original_sizes"])
    assert same["images"] is images and same["original_sizes"].tolist() == [[120, 180]]
    with pytest.raises(InstsegError, match="at most 4x3x64x64; rebuild it with a larger --max-shape"):
        fit_to_profile(batch, ShapeRange((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 64, 64)), mean, ["images"])


def test_tensor_types_map_to_torch():
    member = enum.Enum("DataType", "FLOAT HALF INT32 INT64 BOOL UINT8 INT8")
    assert [torch_dtype(m) for m in member] == [torch.float32, torch.float16, torch.int32, torch.int64, torch.bool,
                                               torch.uint8, torch.int8]
    with pytest.raises(InstsegError, match="FP4"):
        torch_dtype(enum.Enum("DataType", "FP4").FP4)


def test_device_names_for_the_trt_backend():
    assert device_index("cpu") == 0 and device_index("cuda") == 0 and device_index("cuda:2") == 2
    with pytest.raises(InstsegError, match="not a CUDA device"):
        device_index("mps")


# ----------------------------------------------------------------------------- a small ONNX file


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_config_path):
    """A few-node ONNX file with an export's inputs, outputs and instseg metadata (no weights)."""
    from instseg_deploy.class_names import default_class_names
    from instseg_deploy.config import load_config

    cfg = load_config(tiny_config_path)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
              helper.make_tensor_value_info("image_sizes", TensorProto.INT64, ["batch", 2])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("boxes", "scores")]
    nodes = [helper.make_node("Identity", ["images"], ["boxes"]),
             helper.make_node("Cast", ["image_sizes"], ["scores"], to=TensorProto.FLOAT),
             helper.make_node(OP_TYPE, ["images"], ["pooled"], domain=ONNX_DOMAIN)]
    model = helper.make_model(helper.make_graph(nodes, "tiny", inputs, outputs))
    meta = build_metadata(cfg, "raw", "dynamic", "dynamic", "plugin", ["images", "image_sizes"],
                          ["boxes", "scores"])
    for key, value in metadata_to_props(meta).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


# ----------------------------------------------------------------------------- our wiring on FakeTensorRT


class RecordingProgress:
    def __init__(self, interrupt=False):
        self.events: list[tuple] = []
        self.interrupt = interrupt

    def phase_start(self, phase, parent, num_steps):
        self.events.append(("start", phase, num_steps))

    def step(self, phase, step):
        if self.interrupt:
            raise KeyboardInterrupt
        self.events.append(("step", phase, step))

    def phase_finish(self, phase):
        self.events.append(("finish", phase))


def _request(onnx_path, precision=PrecisionPlan("fp16", ("FP16",), None), **kwargs):
    meta = meta_for()
    profiles = input_profiles(resolve_image_range(meta, batch="1:2:4"), ["images", "image_sizes"])
    return BuildRequest(onnx_path, meta, profiles, precision, **kwargs)


def test_build_engine_wiring(tiny_onnx, tmp_path):
    """FakeTensorRT: what our builder hands TensorRT (a test of our calls only, not of TensorRT)."""
    fake = FakeTensorRT()
    library = PluginLibrary(Path("/opt/libinstseg_plugins.so"), "--plugin-lib")
    progress = RecordingProgress()
    engine = build_engine(_request(tiny_onnx, workspace_bytes=2 << 30, plugin_library=library), fake, progress)
    assert bytes(engine) == b"FAKE-ENGINE"
    assert fake.registry.loaded == ["/opt/libinstseg_plugins.so"]
    assert fake.plugin_namespaces == [""] and fake.network_flags == [0]  # TensorRT's plugins; explicit batch
    (build,) = fake.builds
    assert build.onnx_path == str(tiny_onnx) and build.plugin_registered_at_parse  # loaded before parsing
    assert build.profiles == [{"images": ((1, 3, 32, 32), (2, 3, 800, 1088), (4, 3, 1344, 1344)),
                               "image_sizes": ((1, 2), (2, 2), (4, 2))}]
    assert build.flags == {"FP16"} and build.memory_limits == {"WORKSPACE": 2 << 30}
    assert build.calibration_profile is None and build.calibrator_batch_size is None
    assert build.timing_cache is None and build.progress_monitor
    assert progress.events == [("start", "Building engine", 2), ("step", "Building engine", 0),
                               ("step", "Building engine", 1), ("finish", "Building engine")]


@pytest.mark.parametrize("precision, flags", [(PrecisionPlan("fp32", (), None), set()),
                                              (PrecisionPlan("int8", ("INT8", "FP16"), "explicit"), {"INT8", "FP16"})])
def test_build_flags_follow_the_precision_plan(tiny_onnx, precision, flags):
    fake = FakeTensorRT()
    build_engine(_request(tiny_onnx, precision), fake)
    assert fake.builds[0].flags == flags and fake.builds[0].memory_limits == {}  # no --workspace: TensorRT's default


def test_timing_cache_round_trip(tiny_onnx, tmp_path):
    """The cache file is read before the build and written back after it; the next build starts from that."""
    fake = FakeTensorRT()
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    build_engine(_request(tiny_onnx, timing_cache=cache), fake)
    assert fake.builds[-1].timing_cache == b"old" and cache.read_bytes() == b"old+tuned"
    build_engine(_request(tiny_onnx, timing_cache=cache), fake)
    assert fake.builds[-1].timing_cache == b"old+tuned" and cache.read_bytes() == b"old+tuned+tuned"
    fresh = tmp_path / "new.cache"  # no file yet: an empty cache, written after the build
    build_engine(_request(tiny_onnx, timing_cache=fresh), fake)
    assert fake.builds[-1].timing_cache == b"" and fresh.read_bytes() == b"+tuned"


def test_a_timing_cache_from_another_machine_is_replaced(tiny_onnx, tmp_path, caplog):
    fake = FakeTensorRT(timing_cache_fits=False)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"other gpu")
    with caplog.at_level("WARNING"):
        build_engine(_request(tiny_onnx, timing_cache=cache), fake)
    assert fake.builds[0].timing_cache == b""  # started from an empty cache, not the refused one
    assert cache.read_bytes() == b"+tuned"
    assert "from another GPU or TensorRT version" in caplog.text


def test_build_reports_unsupported_nodes_by_name(tiny_onnx):
    fake = FakeTensorRT(parse_errors=[("/roi_heads/Pooler", "InstsegMultilevelRoIAlign", "Plugin not found",
                                       "UNSUPPORTED_NODE"),
                                      ("/rpn/NMS_3", "NonMaxSuppression", "bad attribute", "UNSUPPORTED_NODE")])
    with pytest.raises(InstsegError, match=r"cannot import 2 node\(s\) of tiny.onnx: /roi_heads/Pooler "
                                           r"\(InstsegMultilevelRoIAlign\): Plugin not found; /rpn/NMS_3"):
        build_engine(_request(tiny_onnx), fake)
    fake = FakeTensorRT(parse_errors=[("", "", "model is truncated", "INVALID_NODE")])
    with pytest.raises(InstsegError, match="ONNX parser rejected tiny.onnx: \\? \\(\\?\\): model is truncated"):
        build_engine(_request(tiny_onnx), fake)


def test_build_failure_and_cancellation(tiny_onnx):
    with pytest.raises(InstsegError, match="could not build the engine: out of memory while building"):
        build_engine(_request(tiny_onnx), FakeTensorRT(build_fails=True))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in a progress step asks TensorRT to stop
        build_engine(_request(tiny_onnx), FakeTensorRT(), RecordingProgress(interrupt=True))
    with pytest.raises(InstsegError, match="TensorRT 12.0.0 is not supported"):  # 11.x: tests/test_trt_versions.py
        build_engine(_request(tiny_onnx), FakeTensorRT(version="12.0.0"))


def test_int8_calibration_wiring(tiny_onnx):
    """FakeTensorRT without a GPU: the calibration profile and calibrator are set (our calls)."""
    fake = FakeTensorRT()
    plan = PrecisionPlan("int8", ("INT8",), "calibration")
    build_engine(_request(tiny_onnx, plan, calib_images=[]), fake)
    (build,) = fake.builds
    assert build.flags == {"INT8"}
    assert build.profiles[0]["images"] == ((1, 3, 32, 32), (2, 3, 800, 1088), (4, 3, 1344, 1344))
    # calibration runs at one shape: the smallest batch, the largest size
    assert build.calibration_profile == {"images": ((1, 3, 1344, 1344),) * 3, "image_sizes": ((1, 2),) * 3}
    assert build.calibrator_batch_size == 1


def test_output_allocator_grows_aligns_and_views_outputs():
    """Our IOutputAllocator's bookkeeping, on CPU memory (TensorRT itself is faked)."""
    from instseg_deploy.runtime.trt.runner import make_output_allocator

    fake = types.SimpleNamespace(IOutputAllocator=type("IOutputAllocator", (), {"__init__": lambda self: None}))
    allocator = make_output_allocator(fake, torch.device("cpu"))
    first = allocator.reallocate_output_async("boxes", 0, 3 * 4 * 4, 256, 0)
    assert first % 256 == 0
    assert allocator.reallocate_output("boxes", first, 2 * 4 * 4, 256) == first  # big enough: reused
    grown = allocator.reallocate_output("boxes", first, 1000 * 4 * 4, 256)
    assert grown % 256 == 0 and allocator.buffers["boxes"][0].numel() >= 1000 * 4 * 4
    allocator.notify_shape("boxes", (5, 4))
    view = allocator.tensor("boxes", torch.float32, allocator.shapes["boxes"])
    view.copy_(torch.arange(20, dtype=torch.float32).reshape(5, 4))
    assert view.data_ptr() == grown and view.shape == (5, 4)
    allocator.reallocate_output("classes", 0, 0, 256)  # no detections: a zero-byte request
    assert allocator.tensor("classes", torch.int64, (0,)).shape == (0,)
    assert allocator.error is None


def test_calibration_batches_use_the_shared_preprocessing(d2_dir):
    paths = sorted((DEMO_DATA / "shapes_val" / "images").iterdir())[:3]
    progress = RecordingProgress()
    calib = ShapeRange((1, 3, 512, 512), (1, 3, 512, 512), (1, 3, 512, 512))
    feeds = list(calibration_batches(paths, meta_for(min_size=320, max_size=512), ["images", "image_sizes"],
                                              calib, progress))
    assert len(feeds) == 3 and all(f["images"].shape == (1, 3, 512, 512) for f in feeds)
    assert all(f["image_sizes"].dtype == np.int64 and min(f["image_sizes"][0]) == 320 for f in feeds)
    assert progress.events[0] == ("start", "INT8 calibration images", 3)
    assert progress.events[-1] == ("finish", "INT8 calibration images")


def test_build_progress_display():
    from rich.console import Console
    from rich.progress import Progress

    from instseg_deploy.cli.export_trt import RichBuildProgress

    with Progress(console=Console(file=__import__("io").StringIO())) as progress:
        sink = RichBuildProgress(progress)
        sink.phase_start("Building engine", None, 3)
        sink.phase_start("Tactic selection", "Building engine", 10)
        sink.step("Tactic selection", 4)
        assert [t.description for t in progress.tasks] == ["Building engine", "  Tactic selection"]
        assert progress.tasks[1].completed == 5
        sink.phase_finish("Tactic selection")  # nested phases disappear when done
        sink.step("Building engine", 0)
        sink.phase_finish("Building engine")  # top-level phases stay, completed
        assert [(t.description, t.completed, t.total) for t in progress.tasks] == [("Building engine", 3, 3)]


def test_engine_loader_refuses_a_mismatch_before_deserialising(tmp_path, monkeypatch):
    from instseg_deploy.runtime.trt import runner as trt_backend

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    write_sidecar(engine, _sidecar_for(engine, version="10.3.0", cc="8.9"))
    fake = FakeTensorRT(version="10.8.0")
    fake.Runtime = lambda logger: pytest.fail("deserialisation must not be reached")
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(trt_backend, "current_device_info", lambda index=0: DeviceInfo("NVIDIA L4", "8.9"))
    with pytest.raises(EngineMismatch, match="built with TensorRT 10.3.0 but this is TensorRT 10.8.0"):
        load_trt_runner(engine)
    fake.__version__ = "10.3.0"
    monkeypatch.setattr(trt_backend, "current_device_info", lambda index=0: DeviceInfo("NVIDIA H100", "9.0"))
    with pytest.raises(EngineMismatch, match="compute capability 8.9"):
        load_trt_runner(engine)


@pytest.fixture
def fake_l4_export(tmp_path, monkeypatch) -> Path:
    """FakeTensorRT as `tensorrt`, an L4 as the GPU; returns (the fake, a plugin library file for --plugin-lib)."""
    fake = FakeTensorRT()
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)
    monkeypatch.setattr(engine_export, "current_device_info", lambda index=0: DeviceInfo("NVIDIA L4", "8.9"))
    library = tmp_path / "libinstseg_plugins.so"
    library.write_bytes(b"")
    return fake, library


def test_export_command_writes_engine_and_sidecar_with_fake_tensorrt(tiny_onnx, tmp_path, fake_l4_export):
    """The whole `--to trt` flow on FakeTensorRT (our calls): engine + sidecar contents, stages reported."""
    _, library = fake_l4_export
    out = tmp_path / "out" / "model.engine"
    progress = RecordingProgress()
    progress.stage = lambda name, message: progress.events.append(("stage", name))
    result = export_trt_engine(TrtExportRequest(out, model=tiny_onnx, fp16=True, batch="1:2:4",
                                                size="64x64:320x320:448x448", plugin_lib=library), progress)
    assert result.engine == out and result.sidecar == sidecar_path(out) and result.size_bytes == len(b"FAKE-ENGINE")
    assert progress.events[0] == ("stage", "build") and ("finish", "Building engine") in progress.events
    assert out.read_bytes() == b"FAKE-ENGINE"
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["engine_sha256"] == hashlib.sha256(b"FAKE-ENGINE").hexdigest()
    assert sidecar["tensorrt_version"] == "10.3.0" and sidecar["device"]["compute_capability"] == "8.9"
    assert sidecar["precision"] == "fp16" and sidecar["builder_flags"] == ["FP16"]
    assert sidecar["profiles"]["images"] == {"min": [1, 3, 64, 64], "opt": [2, 3, 320, 320], "max": [4, 3, 448, 448]}
    assert sidecar["profiles"]["image_sizes"] == {"min": [1, 2], "opt": [2, 2], "max": [4, 2]}
    assert sidecar["plugin_library"] == {"required": True, "path": str(library.resolve()),
                                         "sha256": hashlib.sha256(b"").hexdigest()}
    assert sidecar["metadata"]["class_names"] == [f"class_{i}" for i in range(4)]
    assert sidecar["metadata"]["precision"] == "fp16" and sidecar["source_onnx"] == str(tiny_onnx)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.engine", "model.engine.json"]


def test_batched_engines_warn_about_the_nms_candidate_limit(tiny_onnx, tmp_path, fake_l4_export, caplog):
    """FakeTensorRT (our calls): a profile allowing batch > 1 warns about INMSLayer's 5000-box limit."""
    for batch, warned in (("1:2:4", True), ("1", False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger=engine_export.__name__):
            export_trt_engine(TrtExportRequest(tmp_path / f"b{batch[-1]}.engine", model=tiny_onnx, fp16=True,
                                               batch=batch, size="64x64:320x320:448x448",
                                               plugin_lib=fake_l4_export[1]))
        messages = [r.getMessage() for r in caplog.records]
        assert any("up to 4 images" in m and "only the 5000 best" in m for m in messages) is warned, messages


def test_export_cli_builds_the_request_and_shows_the_build(tiny_onnx, tmp_path, fake_l4_export):
    """`instseg export --to trt` on FakeTensorRT: the flags reach the request, the summary names the files."""
    fake, library = fake_l4_export
    out = tmp_path / "model.engine"
    result = runner.invoke(app, ["export", "--to", "trt", "--model", str(tiny_onnx), "--out", str(out), "--fp16",
                                 "--batch", "1:2:4", "--size", "64x64:320x320:448x448", "--workspace", "0.5",
                                 "--plugin-lib", str(library)])
    assert result.exit_code == 0, result.output
    assert "building a TensorRT 10.3.0 engine (fp16) for NVIDIA L4" in result.output
    assert "fp16, images 1x3x64x64 .. 4x3x448x448) and model.engine.json" in result.output
    (build,) = fake.builds
    assert build.flags == {"FP16"} and build.memory_limits == {"WORKSPACE": 1 << 29}
    assert build.profiles[0]["images"] == ((1, 3, 64, 64), (2, 3, 320, 320), (4, 3, 448, 448))


# ----------------------------------------------------------------------------- the CLI without TensorRT


@pytest.mark.skipif(HAVE_TRT, reason="checks the failure on machines without TensorRT")
def test_export_to_trt_without_tensorrt_is_one_line_and_writes_nothing(tiny_onnx, tmp_path, d2_dir):
    out = tmp_path / "out"
    for args in (["--model", str(tiny_onnx)],
                 ["--config", str(DEMO_DATA / "shapes_r50" / "config.yaml"),
                  "--weights", str(DEMO_DATA / "shapes_r50" / "model_final.pkl")]):
        result = runner.invoke(app, ["export", "--to", "trt", *args, "--out", str(out / "model.engine"), "--fp16"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0] == f"error: {trt_util.tensorrt_missing('', trt_util.nvidia_gpu_found())}"
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
        assert not out.exists()


def test_export_to_trt_flag_errors_come_before_tensorrt(tiny_onnx, tmp_path, monkeypatch):
    """Flag errors that need no file come first, even without TensorRT; those that need the model's
    metadata (read after the TensorRT check) come before any build, here with FakeTensorRT."""
    without_model = [(["--workspace", "0"], "--workspace must be a positive"),
                     (["--out", str(tmp_path / "m.onnx")], "not ONNX"),
                     (["--weights", "w.pth"], "either --model model.onnx or --config/--weights")]
    with_model = [(["--batch", "1:8"], "--batch must be one value or MIN:OPT:MAX"),
                  (["--min-shape", "1x3x64x64"], "go together"),
                  (["--int8"], "--int8 needs a quantized model"),
                  (["--calib", str(tmp_path)], "--calib is used with --int8")]
    for cases, tensorrt in ((without_model, None), (with_model, FakeTensorRT())):
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", tensorrt)  # None: import tensorrt fails
        for extra, message in cases:
            args = ["export", "--to", "trt", "--model", str(tiny_onnx)]
            if "--out" not in extra:
                args += ["--out", str(tmp_path / "model.engine")]
            result = runner.invoke(app, args + extra)
            assert result.exit_code == 2 and message in result.output, (extra, result.output)
    assert not (tmp_path / "model.engine").exists()


def test_export_to_onnx_rejects_trt_only_flags(tmp_path, d2_dir):
    weights = DEMO_DATA / "shapes_r50" / "model_final.pkl"
    result = runner.invoke(app, ["export", "--to", "onnx", "--weights", str(weights),
                                 "--out", str(tmp_path / "m.onnx"), "--fp16"])
    assert result.exit_code == 2 and "--fp16 only apply to --to trt" in result.output


def _engine_with_sidecar(tmp_path: Path, tiny_onnx: Path) -> Path:
    """An engine file (not a real one) with the sidecar our export writes, from the tiny ONNX's metadata."""
    meta = read_model_file(tiny_onnx).require_metadata()
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")
    write_sidecar(engine, build_sidecar(meta, engine_sha256=hashlib.sha256(b"serialized engine").hexdigest(),
                                        tensorrt_version="10.3.0", device=DeviceInfo("NVIDIA L4", "8.9"),
                                        precision="fp16", builder_flags=["FP16"], int8_mode=None, profiles={},
                                        plugin_library=None, plugin_required=False, source_onnx=str(tiny_onnx),
                                        workspace_bytes=None))
    return engine


def test_one_reader_for_onnx_and_engine_metadata(tiny_onnx, tmp_path):
    engine = _engine_with_sidecar(tmp_path, tiny_onnx)
    onnx_file, engine_file = read_model_file(tiny_onnx), read_model_file(engine)
    assert (onnx_file.format, engine_file.format) == ("onnx", "engine")
    assert engine_file.metadata["class_names"] == onnx_file.metadata["class_names"]
    assert engine_file.metadata["config"] == onnx_file.metadata["config"]  # the architecture, for FLOPs
    assert (onnx_file.precision, engine_file.precision) == ("fp32", "fp16")
    assert onnx_file.graph is not None and engine_file.sidecar["tensorrt_version"] == "10.3.0"
    sidecar_path(engine).unlink()
    with pytest.raises(EngineMismatch, match="model.engine.json is missing"):
        read_model_file(engine)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"serialized engine")
    with pytest.raises(InstsegError, match="junk.onnx is not a readable ONNX model"):
        read_model_file(junk)


@pytest.mark.skipif(HAVE_TRT, reason="checks the failure on machines without TensorRT")
def test_bench_on_an_engine_without_weights_reaches_the_tensorrt_check(tiny_onnx, tmp_path, monkeypatch):
    """`instseg bench --backend trt --model model.engine`: the engine's metadata comes from its sidecar
    (FLOPs, labels), so the run gets as far as the row loading the engine instead of reading it as ONNX.
    FakeTensorRT passes the parent's early check; the row's own process (spawned) has no TensorRT."""
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", FakeTensorRT())
    engine = _engine_with_sidecar(tmp_path, tiny_onnx)
    result = runner.invoke(app, ["bench", "--backend", "trt", "--model", str(engine), "--iters", "1",
                                 "--warmup", "0", "--threads", "1"])
    assert result.exit_code != 0
    assert "benchmark row trt" in result.output and "TensorRT is not installed" in result.output, result.output
    assert "not a readable ONNX model" not in result.output


def test_backend_trt_in_predict_refuses_an_engine_without_sidecar(tmp_path, d2_dir):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    result = runner.invoke(app, ["predict", str(DEMO_DATA / "shapes_val" / "images"), "--backend", "trt",
                                 "--model", str(engine), "--out", str(tmp_path / "pred")])
    assert result.exit_code == 2 and "model.engine.json is missing" in result.output, result.output
    assert not (tmp_path / "pred").exists()


# ----------------------------------------------------------------------------- doctor


def _env(**changes):
    base = dict(torch_version="2.5.0", torch_cuda="12.4", gpus=["NVIDIA L4"], ort_version="1.20.0",
                ort_providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                trt_version="10.3.0", trt_problem=None, plugin_library=Path("/opt/libinstseg_plugins.so"),
                plugin_problem="/opt/libinstseg_plugins.so (from plugins/build)", openvino_version="2026.4.1",
                openvino_capabilities=["BF16", "FP32", "INT8"])
    base.update(changes)
    return doctor_cli.Environment(**base)


def _rows(env):
    return {row.key: row for row in doctor_cli.backend_statuses(env)}


def test_doctor_on_a_full_gpu_machine():
    rows = _rows(_env())
    assert list(rows) == ["torch", "torch-cuda", "ort", "ort-cuda", "ort-trt", "openvino", "trt", "trt-plugin"]
    assert all(row.usable and row.fix is None for row in rows.values())


def test_doctor_on_a_cpu_machine_says_why_and_how_to_fix():
    rows = _rows(_env(torch_cuda=None, gpus=[], ort_providers=["CPUExecutionProvider"], trt_version=None,
                      trt_problem="TensorRT is not installed", plugin_library=None, plugin_problem="not found"))
    assert rows["torch"].usable and rows["ort"].usable
    assert "CPU-only build" in rows["torch-cuda"].detail and "CUDA build of torch" in rows["torch-cuda"].fix
    assert "has no CUDAExecutionProvider" in rows["ort-cuda"].detail and "onnxruntime-gpu" in rows["ort-cuda"].fix
    assert rows["trt"].detail == "TensorRT is not installed" and "tensorrt-cu12" in rows["trt"].fix
    assert "cmake -S plugins" in rows["trt-plugin"].fix
    assert not any(rows[k].usable for k in ("torch-cuda", "ort-cuda", "ort-trt", "trt", "trt-plugin"))


def test_doctor_distinguishes_missing_gpu_from_missing_tensorrt():
    rows = _rows(_env(gpus=[]))
    assert "installed but no CUDA GPU visible" in rows["trt"].detail and "nvidia-smi" in rows["trt"].fix
    assert "present but no CUDA GPU" in rows["ort-trt"].detail
    rows = _rows(_env(trt_version=None, trt_problem="TensorRT does not import (libnvinfer.so.10: not found)"))
    assert not rows["ort-trt"].usable and "libnvinfer" in rows["ort-trt"].detail
    rows = _rows(_env(trt_version="11.1.0"))
    assert rows["trt"].usable and "written for TensorRT 10" in rows["trt"].notes[0]


def test_doctor_command_on_this_machine():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "ort-trt" in result.output and "trt-plugin" in result.output
    result = runner.invoke(app, ["doctor", "--require", "torch,ort"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["doctor", "--require", "nosuch"])
    assert result.exit_code == 2 and "unknown backend(s) nosuch" in result.output
    if not HAVE_TRT:
        result = runner.invoke(app, ["doctor", "--require", "trt"])
        assert result.exit_code == 1 and "not usable here: trt" in result.output


# ----------------------------------------------------------------------------- ONNX Runtime's TensorRT EP


def test_tensorrt_ep_options_cache_engines_and_cover_every_input_size(tmp_path, monkeypatch):
    from instseg_deploy.runtime.ort import tensorrt_ep_options

    monkeypatch.setenv("INSTSEG_DEPLOY_CACHE", str(tmp_path))
    options = tensorrt_ep_options(meta_for(), ["images", "image_sizes"], fp16=True)
    assert options["trt_profile_min_shapes"] == "images:1x3x32x32,image_sizes:1x2"
    assert options["trt_profile_opt_shapes"] == "images:1x3x800x1088,image_sizes:1x2"
    assert options["trt_profile_max_shapes"] == "images:8x3x1344x1344,image_sizes:8x2"
    assert options["trt_engine_cache_enable"] and options["trt_engine_cache_path"] == str(tmp_path / "ort-tensorrt")
    assert options["trt_timing_cache_enable"] and options["trt_fp16_enable"] is True


def test_ort_session_gets_the_tensorrt_ep_options(tiny_onnx, monkeypatch):
    """ONNX Runtime itself is replaced here: what load_ort_runner passes as providers."""
    import onnxruntime

    from instseg_deploy.runtime import ort as ort_backend

    seen = {}

    class FakeSession:
        def __init__(self, model, sess_options=None, providers=None):
            seen["providers"] = providers

        def get_inputs(self):
            return [types.SimpleNamespace(name="images"), types.SimpleNamespace(name="image_sizes")]

        def get_outputs(self):
            return []

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort_backend, "_plugin_model_for_ort", lambda path, options: b"")
    ort_backend.load_ort_runner(tiny_onnx, ort_backend.SessionSettings(("trt", "cuda", "cpu")))
    names = [p[0] for p in seen["providers"]]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options = seen["providers"][0][1]
    assert trt_options["trt_engine_cache_enable"] and "images:1x3x32x32" in trt_options["trt_profile_min_shapes"]
    assert seen["providers"][1][1] == {} and seen["providers"][2][1] == {}


# ----------------------------------------------------------------------------- with TensorRT and a GPU

# one marker, so that the reason names the first thing missing (TensorRT, then the GPU)
needs_trt_and_gpu = pytest.mark.skipif(not (HAVE_TRT and HAVE_GPU), reason=NO_TRT if not HAVE_TRT else "no CUDA GPU")


def _plugin_library_or_skip() -> Path:
    try:
        return find_plugin_library().path
    except PluginLibraryError as e:
        pytest.skip(f"plugin library not built: {e}")


@pytest.fixture(scope="module")
def engines(tmp_path_factory, exported_onnx, d2_dir):
    """Engines of the fixture model, built on first use: {(variant, precision): path}."""
    out = tmp_path_factory.mktemp("engines")
    built: dict[tuple[str, str], Path] = {}

    def get(variant: str, precision: str) -> Path:
        key = (variant, precision)
        if key not in built:
            plugin = _plugin_library_or_skip() if variant == "plugin" else None
            path = out / f"{variant}_{precision}.engine"
            flags = {"fp32": {}, "fp16": {"fp16": True},
                     "int8-calib": {"int8": True, "calib": DEMO_DATA / "shapes_val" / "images"}}[precision]
            # default sizes from the model's preprocessing (short side 320, long side <= 512)
            export_trt_engine(TrtExportRequest(path, model=exported_onnx[variant], batch="1:1:2", plugin_lib=plugin,
                                               timing_cache=out / "timing.cache", **flags))
            built[key] = path
        return built[key]

    return get


@pytest.fixture(scope="module")
def ort_reference(exported_onnx, d2_dir):
    """ONNX Runtime (CPU) on the standard-op graph: predictions on the golden images and AP."""
    from instseg_deploy.runtime.factory import load_predictor

    predictor = load_predictor("ort", model=exported_onnx["raw"], score_thresh=None)  # as the engines: every detection
    return predictor, _ap(predictor, d2_dir)


def _ap(predictor, d2_dir) -> dict[str, float]:
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.evaluation.dataset_ap import dataset_ap

    dataset = load_coco_dataset(DEMO_DATA / "shapes_val" / "images", DEMO_DATA / "shapes_val" / "annotations.json")
    return dataset_ap(predictor, dataset).ap()


def _trt_predictor(engine: Path, cuda_graph: bool = False):
    from instseg_deploy.runtime.factory import exported_model_predictor
    from instseg_deploy.runtime.trt.runner import load_trt_runner

    return exported_model_predictor(load_trt_runner(engine, cuda_graph=cuda_graph), engine, None)


@needs_trt_and_gpu
@pytest.mark.parametrize("variant", ["raw", "plugin"])
def test_fp32_engine_matches_onnx_runtime(engines, ort_reference, variant):
    import cv2

    from golden import golden_images
    from instseg_deploy.evaluation.parity import match_detections

    reference, _ = ort_reference
    predictor = _trt_predictor(engines(variant, "fp32"))
    matched = total = 0
    for _, path in golden_images():
        image = cv2.imread(str(path))
        ref, ours = reference(image), predictor(image)
        report = match_detections(ref, ours)
        matched += report.matched
        total += max(len(ref), len(ours))
    assert total > 300 and matched / total >= 0.99


@needs_trt_and_gpu
def test_fp16_engine_ap_within_0_1_of_onnx_runtime(engines, ort_reference, d2_dir):
    _, reference_ap = ort_reference
    ap = _ap(_trt_predictor(engines("plugin", "fp16")), d2_dir)
    for iou_type in ("bbox", "segm"):
        assert abs(ap[iou_type] - reference_ap[iou_type]) <= 0.1, (iou_type, ap, reference_ap)


def _installed_trt_api():
    import tensorrt

    return trt_util.tensorrt_api(tensorrt.__version__)


@needs_trt_and_gpu
def test_int8_calibrated_engine_ap_within_0_5_of_onnx_runtime(engines, ort_reference, d2_dir):
    if _installed_trt_api().strongly_typed:
        pytest.skip("TensorRT 11 has no implicit INT8 calibration (the refusal is tested below)")
    _, reference_ap = ort_reference
    ap = _ap(_trt_predictor(engines("raw", "int8-calib")), d2_dir)
    for iou_type in ("bbox", "segm"):
        assert abs(ap[iou_type] - reference_ap[iou_type]) <= 0.5, (iou_type, ap, reference_ap)


@needs_trt_and_gpu
def test_implicit_calibration_is_refused_on_tensorrt_11(exported_onnx, tmp_path):
    """--int8 --calib on 11.x: refused before any build, naming the commands that make and build a Q/DQ model."""
    if not _installed_trt_api().strongly_typed:
        pytest.skip("TensorRT 10 still has implicit INT8 calibration (tested above)")
    out = tmp_path / "calibrated.engine"
    with pytest.raises(InstsegError, match="instseg quantize --model .* --calib"):
        export_trt_engine(TrtExportRequest(out, model=exported_onnx["raw"], int8=True,
                                           calib=DEMO_DATA / "shapes_val" / "images"))
    assert not out.exists()


@needs_trt_and_gpu
def test_int8_qdq_engine_ap_within_0_5_of_onnx_runtime(exported_onnx, ort_reference, d2_dir, tmp_path):
    """Explicit INT8: the Q/DQ model `instseg quantize` writes. 10.x builds it with --fp16 (INT8
    implied, FP16 for the float parts); 11.x builds it strongly typed, its types deciding."""
    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.quantize.qdq import quantize_int8

    qdq = tmp_path / "model.int8.onnx"
    quantize_int8(exported_onnx["raw"], qdq, calibration_images(images=DEMO_DATA / "shapes_val" / "images",
                                                                 num_images=32))
    engine = tmp_path / "model.int8.engine"
    strongly_typed = _installed_trt_api().strongly_typed
    export_trt_engine(TrtExportRequest(engine, model=qdq, fp16=not strongly_typed, batch="1:1:2"))
    sidecar = read_sidecar(engine)
    assert sidecar["int8_mode"] == "explicit"
    assert sidecar["builder_flags"] == ([] if strongly_typed else ["INT8", "FP16"])
    assert sidecar["strongly_typed"] is strongly_typed
    _, reference_ap = ort_reference
    ap = _ap(_trt_predictor(engine), d2_dir)
    for iou_type in ("bbox", "segm"):
        assert abs(ap[iou_type] - reference_ap[iou_type]) <= 0.5, (iou_type, ap, reference_ap)


@needs_trt_and_gpu
def test_real_sidecar_describes_this_machine_and_a_mismatch_is_refused(engines, tmp_path):
    import shutil

    import tensorrt

    engine = engines("raw", "fp32")
    sidecar = read_sidecar(engine)
    device = trt_sidecar.current_device_info()
    assert sidecar["tensorrt_version"] == tensorrt.__version__
    assert sidecar["device"]["compute_capability"] == device.compute_capability
    assert sidecar["plugin_library"]["required"] is False
    copy = tmp_path / "copy.engine"
    shutil.copy(engine, copy)
    write_sidecar(copy, {**sidecar, "tensorrt_version": "9.0.0"})
    with pytest.raises(EngineMismatch, match="built with TensorRT 9.0.0"):
        load_trt_runner(copy)


@needs_trt_and_gpu
def test_batches_and_cuda_graph_request(engines, ort_reference):
    """A batch of two images of different sizes; --cuda-graph on an engine with data-dependent
    outputs (NMS) says it cannot capture and gives the same detections."""
    import cv2

    from golden import golden_images
    from instseg_deploy.evaluation.parity import match_detections

    reference, _ = ort_reference
    images = [cv2.imread(str(golden_images()[i][1])) for i in (0, 15)]
    plain = _trt_predictor(engines("raw", "fp32"))
    for ref, ours in zip(reference.predict(images), plain.predict(images)):
        assert match_detections(ref, ours).match_rate >= 0.99
    with pytest.warns(UserWarning, match="data-dependent"):
        graphed = _trt_predictor(engines("raw", "fp32"), cuda_graph=True).predict(images)
    for a, b in zip(plain.predict(images), graphed):
        assert match_detections(a, b).match_rate == 1.0
