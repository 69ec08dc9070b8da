"""Which TensorRT plugin library may be loaded (issue 22, item 3).

Loading a library runs its code, so it comes only from places the user chose: ``--plugin-lib``,
``$INSTSEG_PLUGIN_LIB``, our own build under the working directory, or a copy next to the engine
whose SHA-256 its sidecar records. A sidecar naming any other library is refused with the reason
and the fix. The rule is checked in Python (``runtime.trt.plugin_library``, the loader's wiring on
``FakeTensorRT``, the exporter's record) and in C++ (``choose_plugin_library`` in
cpp/src/sidecar_check.cpp, compiled with cpp/tests/plugin_library_check.cpp into a small binary,
no TensorRT needed), which must give the Python outcome, message for message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fake_tensorrt import FakeTensorRT
from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.sidecar import DeviceInfo, build_sidecar, file_sha256, sidecar_path, write_sidecar
from instseg_deploy.runtime.trt.plugin_library import (
    DEFAULT_LIBRARY,
    PLUGIN_ENV,
    PluginLibrary,
    PluginLibraryError,
    RecordedLibrary,
    find_plugin_library,
    recorded_library,
)

REPO = Path(__file__).resolve().parent.parent
CPP = REPO / "cpp"
META = {"format_version": 1, "class_names": ["a", "b"], "num_classes": 2,
        "preprocess": {"input_format": "BGR", "min_size": 800, "max_size": 1333,
                       "pixel_mean": [103.53, 116.28, 123.675], "pixel_std": [1.0, 1.0, 1.0],
                       "size_divisibility": 32},
        "postprocess": {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_image": 100,
                        "mask_threshold": 0.5, "masks": "raw"},
        "batch": "dynamic", "size": "dynamic", "roi_align": "plugin", "precision": "fp32",
        "inputs": ["images", "image_sizes"], "outputs": ["boxes", "scores", "classes", "batch_idx", "mask_probs"]}


def _library(path: Path, content: bytes = b"\x7fELF plugin library") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _engine(folder: Path, plugin_path: str | None, plugin_sha256: str | None) -> Path:
    """An engine file (not a real one) with the sidecar the exporter writes, naming ``plugin_path``."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / "model.engine"
    engine.write_bytes(b"serialized engine")
    write_sidecar(engine, build_sidecar(META, engine_sha256=file_sha256(engine), tensorrt_version="10.3.0",
                                        device=DeviceInfo("NVIDIA L4", "8.9"), precision="fp16",
                                        builder_flags=["FP16"], int8_mode=None, profiles={},
                                        plugin_library=plugin_path, plugin_required=True,
                                        source_onnx="model.onnx", workspace_bytes=None, plugin_sha256=plugin_sha256))
    return engine


def _find(engine: Path, explicit=None, env=None, default=DEFAULT_LIBRARY) -> PluginLibrary:
    sidecar = json.loads(sidecar_path(engine).read_text())
    return find_plugin_library(explicit, env or {}, default, recorded_library(sidecar, engine))


@pytest.fixture
def world(tmp_path):
    """A checkout with our build, a library elsewhere (/tmp/.../evil.so), and a build folder whose library was
    recorded at export: {name: path}."""
    built = _library(tmp_path / "checkout" / DEFAULT_LIBRARY, b"our own build")
    evil = _library(tmp_path / "elsewhere" / "evil.so", b"somebody else's code")
    exported = _library(tmp_path / "build_machine" / "libinstseg_plugins.so", b"the library the engine was built with")
    return {"built": built, "evil": evil, "exported": exported, "root": tmp_path}


# ----------------------------------------------------------------------------- the rule, in Python


def test_a_sidecar_naming_a_library_elsewhere_is_refused_with_the_rule_and_the_fix(world):
    engine = _engine(world["root"] / "deploy", str(world["evil"]), file_sha256(world["evil"]))
    with pytest.raises(PluginLibraryError) as e:
        _find(engine, default=world["built"])  # even with our own build present: the sidecar asked for another
    message = str(e.value)
    assert isinstance(e.value, InstsegError) and "\n" not in message
    assert message.startswith(f"refusing to load {world['evil']}, the plugin library model.engine.json names: "
                              "it is neither our own build nor next to the engine")
    assert f"may only point at {world['built']} under the working directory" in message
    assert message.endswith("pass --plugin-lib PATH or set INSTSEG_PLUGIN_LIB to the library to load")


def test_a_copy_next_to_the_engine_is_accepted_only_with_the_recorded_sha256(world):
    exported = world["exported"]
    engine = _engine(world["root"] / "deploy", str(exported), file_sha256(exported))
    beside = engine.parent / exported.name
    shutil.copyfile(exported, beside)
    assert _find(engine) == PluginLibrary(beside.resolve(), "next to the engine")
    # Preferred over the path recorded at export, which still exists: the copy is the verified one.
    assert _find(engine, default=world["built"]) == PluginLibrary(beside.resolve(), "next to the engine")

    beside.write_bytes(b"replaced after export")
    with pytest.raises(PluginLibraryError) as e:
        _find(engine, default=world["built"])
    assert str(e.value).startswith(
        f"refusing to load {beside}, the plugin library model.engine.json names: its SHA-256 is "
        f"{hashlib.sha256(b'replaced after export').hexdigest()}, not the {file_sha256(exported)} the sidecar records")
    assert "pass --plugin-lib PATH or set INSTSEG_PLUGIN_LIB" in str(e.value)

    unrecorded = _engine(world["root"] / "old", str(exported), None)  # a sidecar without the library's SHA-256
    shutil.copyfile(exported, unrecorded.parent / exported.name)
    with pytest.raises(PluginLibraryError, match="names: the sidecar records no SHA-256 for it"):
        _find(unrecorded)


def test_the_users_choice_wins_over_the_sidecar(world):
    engine = _engine(world["root"] / "deploy", str(world["evil"]), None)
    mine = _library(world["root"] / "mine" / "libinstseg_plugins.so")
    assert _find(engine, explicit=mine, env={PLUGIN_ENV: str(world["built"])}) == PluginLibrary(mine.resolve(),
                                                                                              "--plugin-lib")
    assert _find(engine, env={PLUGIN_ENV: str(mine)}) == PluginLibrary(mine.resolve(), PLUGIN_ENV)
    with pytest.raises(PluginLibraryError, match=f"--plugin-lib {world['root']}/gone.so does not exist"):
        _find(engine, explicit=world["root"] / "gone.so")  # a typo does not fall through to the sidecar's


def test_our_own_build_is_accepted(world, monkeypatch):
    # Named by the sidecar (exported in the checkout), found through the relative DEFAULT_LIBRARY.
    monkeypatch.chdir(world["root"] / "checkout")
    engine = _engine(world["root"] / "deploy", str(world["built"]), file_sha256(world["built"]))
    assert _find(engine) == PluginLibrary(world["built"].resolve(), "plugins/build")
    # Named nowhere, or the sidecar's library is gone (another machine): our build, not an error.
    for plugin_path in (None, str(world["root"] / "build_machine" / "gone" / "libinstseg_plugins.so")):
        engine = _engine(world["root"] / "other", plugin_path, None)
        assert _find(engine) == PluginLibrary(world["built"].resolve(), "plugins/build")
    monkeypatch.chdir(world["root"])
    with pytest.raises(PluginLibraryError, match="libinstseg_plugins.so was not found .*other/libinstseg_plugins.so"):
        _find(engine)  # no build here: not found, with what was tried and how to build it


def test_recorded_library_reads_what_the_exporter_writes_and_ignores_malformed_records(tmp_path):
    engine = _engine(tmp_path, "/opt/libinstseg_plugins.so", "ab" * 32)
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["plugin_library"] == {"required": True, "path": "/opt/libinstseg_plugins.so", "sha256": "ab" * 32}
    assert recorded_library(sidecar, engine) == RecordedLibrary(engine, Path("/opt/libinstseg_plugins.so"), "ab" * 32)
    for record in (None, "lib.so", {"path": 3}, {"path": ""}, {"required": True}):
        assert recorded_library({"plugin_library": record}, engine) is None, record
    assert recorded_library({"plugin_library": {"path": "x.so", "sha256": 5}}, engine).sha256 is None


# ----------------------------------------------------------------------------- the loader's wiring


class _Deserialising(Exception):
    """Raised by the fake in place of TensorRT's runtime: the plugin step is over."""


def _load_on_fake(engine: Path, monkeypatch, plugin_lib=None) -> FakeTensorRT:
    from instseg_deploy.runtime.trt import runner as trt_runner

    fake = FakeTensorRT(version="10.3.0")

    def runtime(logger):
        raise _Deserialising

    fake.Runtime = runtime
    monkeypatch.setattr(trt_runner, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(trt_runner, "current_device_info", lambda index=0: DeviceInfo("NVIDIA L4", "8.9"))
    monkeypatch.delenv(PLUGIN_ENV, raising=False)
    with pytest.raises(_Deserialising):
        trt_runner.load_trt_runner(engine, plugin_lib=plugin_lib)
    return fake


def test_the_engine_loader_loads_nothing_a_sidecar_may_not_name(world, monkeypatch):
    monkeypatch.chdir(world["root"])  # no plugins/build here
    engine = _engine(world["root"] / "deploy", str(world["evil"]), file_sha256(world["evil"]))
    with pytest.raises(PluginLibraryError, match="refusing to load .*evil.so"):
        _load_on_fake(engine, monkeypatch)
    assert _load_on_fake(engine, monkeypatch, plugin_lib=world["built"]).registry.loaded == [
        str(world["built"].resolve())]
    beside = shutil.copyfile(world["evil"], engine.parent / "evil.so")  # the recorded SHA-256 is evil.so's
    assert _load_on_fake(engine, monkeypatch).registry.loaded == [str(beside.resolve())]


def test_the_exporter_records_the_librarys_sha256(tmp_path, monkeypatch):
    """`instseg export --to trt` on FakeTensorRT: the sidecar names the library and its SHA-256, so a copy of
    it next to the engine is accepted by the loader."""
    import onnx
    from onnx import TensorProto, helper

    from instseg_deploy.export.trt import engine_export
    from instseg_deploy.model_file.metadata import metadata_to_props
    from instseg_deploy.ops.roi_align_contract import ONNX_DOMAIN, OP_TYPE

    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
              helper.make_tensor_value_info("image_sizes", TensorProto.INT64, ["batch", 2])]
    nodes = [helper.make_node(OP_TYPE, ["images", "image_sizes"], ["boxes"], domain=ONNX_DOMAIN)]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ONNX_DOMAIN, 1)])
    for key, value in metadata_to_props(META).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, tmp_path / "model.onnx")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", FakeTensorRT())
    monkeypatch.setattr(engine_export, "current_device_info", lambda index=0: DeviceInfo("NVIDIA L4", "8.9"))
    library = _library(tmp_path / "build" / "libinstseg_plugins.so", b"plugin bytes")
    out = tmp_path / "deploy" / "model.engine"
    engine_export.export_trt_engine(engine_export.TrtExportRequest(out, model=tmp_path / "model.onnx", batch="1",
                                                                   size="64x64", plugin_lib=library))
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["plugin_library"] == {"required": True, "path": str(library.resolve()),
                                         "sha256": hashlib.sha256(b"plugin bytes").hexdigest()}
    shutil.copyfile(library, out.parent / library.name)
    assert find_plugin_library(None, {}, tmp_path / "none.so", recorded_library(sidecar, out)) == PluginLibrary(
        (out.parent / library.name).resolve(), "next to the engine")


# ----------------------------------------------------------------------------- the same rule in C++


@pytest.fixture(scope="module")
def cpp_choice(tmp_path_factory) -> Path:
    """cpp/tests/plugin_library_check.cpp with sidecar_check.cpp and metadata.cpp, built with the system compiler."""
    compiler = shutil.which("c++") or shutil.which("g++")
    missing = [] if compiler else ["a C++ compiler"]
    for header, package in (("nlohmann/json.hpp", "nlohmann-json3-dev"), ("openssl/evp.h", "libssl-dev")):
        if not any((Path(d) / header).is_file() for d in ("/usr/include", "/usr/local/include")):
            missing.append(f"{header} ({package})")
    if missing:
        pytest.skip(f"the C++ check needs {', '.join(missing)}: run cpp/scripts/install_deps.sh")
    tool = tmp_path_factory.mktemp("plugin_library_check") / "plugin_library_check"
    cmd = [compiler, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-I", str(CPP / "include"),
           str(CPP / "tests" / "plugin_library_check.cpp"), str(CPP / "src" / "sidecar_check.cpp"),
           str(CPP / "src" / "metadata.cpp"), "-lcrypto", "-o", str(tool)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr[-4000:]}"
    return tool


def _both(tool: Path, engine: Path, explicit: Path | None = None, env: str | None = None,
          default: Path = DEFAULT_LIBRARY) -> tuple[str, str]:
    """(C++ outcome, Python outcome): "PATH SOURCE" or the error message."""
    environ = {k: v for k, v in os.environ.items() if k != PLUGIN_ENV}
    if env is not None:
        environ[PLUGIN_ENV] = env
    cpp = subprocess.run([str(tool), str(engine), "" if explicit is None else str(explicit), str(default)],
                         capture_output=True, text=True, check=False, env=environ)
    assert cpp.returncode in (0, 2), cpp.stderr  # not killed by a signal
    cpp_outcome = cpp.stdout.strip() if cpp.returncode == 0 else cpp.stderr.strip().removeprefix("error: ")
    try:
        library = _find(engine, explicit, {PLUGIN_ENV: env} if env is not None else {}, default)
        python_outcome = f"{library.path} {library.source}"
    except PluginLibraryError as e:
        python_outcome = str(e)
    return cpp_outcome, python_outcome


def test_the_cpp_runtime_applies_the_same_rule(cpp_choice, world, monkeypatch):
    root, built = world["root"], world["built"]
    engine = _engine(root / "deploy", str(world["evil"]), file_sha256(world["evil"]))
    cpp, python = _both(cpp_choice, engine, default=built)
    assert cpp == python and cpp.startswith(f"refusing to load {world['evil']}, ") and "--plugin-lib PATH" in cpp
    assert _both(cpp_choice, engine, explicit=built) == (f"{built} --plugin-lib",) * 2
    assert _both(cpp_choice, engine, env=str(built)) == (f"{built} INSTSEG_PLUGIN_LIB",) * 2
    cpp, python = _both(cpp_choice, engine, env=str(root / "gone.so"))
    assert cpp == python == f"INSTSEG_PLUGIN_LIB={root / 'gone.so'} does not exist"

    beside = shutil.copyfile(world["evil"], engine.parent / "evil.so")  # the SHA-256 the sidecar records
    assert _both(cpp_choice, engine) == (f"{beside} next to the engine",) * 2
    beside.write_bytes(b"replaced")
    cpp, python = _both(cpp_choice, engine)
    assert cpp == python and f"its SHA-256 is {hashlib.sha256(b'replaced').hexdigest()}, not the" in cpp
    unrecorded = _engine(root / "old", str(world["exported"]), None)
    shutil.copyfile(world["exported"], unrecorded.parent / "libinstseg_plugins.so")
    cpp, python = _both(cpp_choice, unrecorded)
    assert cpp == python and "the sidecar records no SHA-256 for it" in cpp

    monkeypatch.chdir(root / "checkout")  # our build through the relative default, for both
    ours = _engine(root / "ours", str(built), None)
    cpp, python = _both(cpp_choice, ours)
    assert cpp == python == f"{built} plugins/build"
    gone = _engine(root / "gone", str(root / "nowhere" / "libinstseg_plugins.so"), None)
    assert _both(cpp_choice, gone) == (f"{built} plugins/build",) * 2
    monkeypatch.chdir(root)
    cpp, python = _both(cpp_choice, gone)
    assert cpp == python and "libinstseg_plugins.so was not found" in cpp and "cmake -S plugins" in cpp
