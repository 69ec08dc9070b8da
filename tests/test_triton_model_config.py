"""config.pbtxt of the served models: every rendered config parses with Triton's own model_config_pb2 and
says what the contract (Python model) or the exported file (net model) says; the wiring check finds a
net config that does not fit its graph."""

from __future__ import annotations

import importlib
import json
import sys
import types

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from instseg_deploy.class_names import default_class_names
from instseg_deploy.config import load_config
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.onnx_export import export_onnx
from instseg_deploy.model_file.metadata import build_metadata, metadata_to_props
from instseg_deploy.model_file.reader import read_model_file
from instseg_deploy.model_file.sidecar import DeviceInfo, build_sidecar, write_sidecar
from instseg_deploy.modeling import build_model
from instseg_deploy.ops.roi_align_contract import ONNX_DOMAIN, OP_TYPE
from instseg_deploy.runtime.triton.contract import DATATYPES, DIMS, INPUTS, METADATA_PARAMETER, OUTPUTS
from instseg_deploy.runtime.trt.plugin_library import LIBRARY_NAME
from instseg_deploy.runtime.trt.profiles import input_profiles, profiles_json, resolve_image_range
from instseg_deploy.serving.triton.model_config import (
    NET_MODEL_PARAMETER,
    ModelSpec,
    TensorSpec,
    check_bls_wiring,
    net_model_config,
    net_model_name,
    net_tensors,
    parse_config,
    plugin_note,
    python_model_config,
    render_config,
)

# A metadata JSON a naive writer would break: quotes, backslashes, a newline, non-ASCII (also outside the BMP).
AWKWARD = json.dumps({"class_names": ['say "hi"', "C:\\dir\\", "line\nbreak", "café", "猫", "🐱"]},
                     ensure_ascii=False)


@pytest.fixture(scope="module")
def pb2():
    return pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed")


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory, tiny_config_path):
    """The tiny config (random weights) exported with dynamic shapes and raw masks, and with batch 2 at
    320x320 and pasted masks: {"dynamic"|"fixed": path}."""
    cfg = load_config(tiny_config_path)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    out = tmp_path_factory.mktemp("triton_onnx")
    return {"dynamic": export_onnx(model, cfg, out / "dynamic.onnx").path,
            "fixed": export_onnx(model, cfg, out / "fixed.onnx", batch=2, size=(320, 320), masks="pasted").path}


def onnx_io(path):
    """(inputs, outputs) of an ONNX file as {name: ("TYPE_...", dims)}, read with onnx alone."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    kserve = {"FLOAT": "FP32", "INT64": "INT64", "BOOL": "BOOL"}

    def table(values):
        return {v.name: ("TYPE_" + kserve[TensorProto.DataType.Name(v.type.tensor_type.elem_type)],
                         [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
                for v in values if v.name not in weights}

    return table(graph.input), table(graph.output)


def config_io(config, pb2):
    def table(tensors):
        return {t.name: (pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors}

    return table(config.input), table(config.output)


def warmup_inputs(config, pb2):
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1 and all(v.zero_data for v in warmup.inputs.values())
    return {name: (pb2.DataType.Name(v.data_type), list(v.dims)) for name, v in warmup.inputs.items()}


def ov_table(ports):
    """{name: ("TYPE_...", dims)} of OpenVINO model ports, -1 where dynamic."""
    types = {"f32": "TYPE_FP32", "i64": "TYPE_INT64", "boolean": "TYPE_BOOL"}
    return {p.get_any_name(): (types[p.get_element_type().get_type_name()],
                               [d.get_length() if d.is_static else -1 for d in p.get_partial_shape()]) for p in ports}


def fake_engine(tmp_path, onnx_path, plugin_required=False):
    """An engine file (not a real one) with the sidecar `instseg export --to trt` would write for ``onnx_path``."""
    meta = read_model_file(onnx_path).metadata
    engine = tmp_path / f"{onnx_path.stem}.engine"
    engine.write_bytes(b"serialized engine")
    profiles = profiles_json(input_profiles(resolve_image_range(meta), meta["inputs"]))
    library = f"/build/{LIBRARY_NAME}" if plugin_required else None
    write_sidecar(engine, build_sidecar(meta, engine_sha256="0" * 64, tensorrt_version="10.9.0",
                                        device=DeviceInfo("NVIDIA H200", "9.0"), precision="fp32", builder_flags=[],
                                        int8_mode=None, profiles=profiles, plugin_library=library,
                                        plugin_required=plugin_required, source_onnx=str(onnx_path),
                                        workspace_bytes=None, plugin_sha256="ab" * 32 if plugin_required else None))
    return engine, profiles


# ----------------------------------------------------------------------------- the Python-backend model


@pytest.mark.parametrize("max_batch, instances, delay, kind", [(1, 1, 0, "KIND_CPU"), (4, 2, 2000, "KIND_CPU"),
                                                               (32, 8, 150, "KIND_GPU")])
def test_python_model_config_follows_the_contract(pb2, max_batch, instances, delay, kind):
    parameters = {"model_file": "model.onnx", "backend": "ort", "threads": "2", METADATA_PARAMETER: AWKWARD}
    text = python_model_config("instseg", max_batch, instances, delay, parameters, kind=kind)
    config = parse_config(text)
    assert text.isascii()  # non-ASCII travels as octal UTF-8 escapes
    assert (config.name, config.backend, config.platform, config.max_batch_size) == ("instseg", "python", "",
                                                                                     max_batch)
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == delay
    assert [(g.count, pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [(instances, kind)]
    inputs, outputs = config_io(config, pb2)
    assert inputs == {n: ("TYPE_" + DATATYPES[n], list(DIMS[n])) for n in INPUTS}
    assert outputs == {n: ("TYPE_" + DATATYPES[n], list(DIMS[n])) for n in OUTPUTS}
    assert all(t.optional and t.allow_ragged_batch for t in config.input)
    assert {k: v.string_value for k, v in config.parameters.items()} == parameters
    assert json.loads(config.parameters[METADATA_PARAMETER].string_value)["class_names"][-3:] == ["café", "猫", "🐱"]
    # deterministic, whatever order the caller's parameters come in
    assert python_model_config("instseg", max_batch, instances, delay, dict(reversed(parameters.items())),
                               kind=kind) == text


# ----------------------------------------------------------------------------- the network model


@pytest.mark.parametrize("shape", ["dynamic", "fixed"])
def test_onnx_net_config_names_the_graphs_tensors(pb2, tiny_exports, shape):
    path = tiny_exports[shape]
    text = net_model_config("instseg_net", path, instances=3, threads=4)
    config = parse_config(text)
    assert (config.platform, config.backend, config.max_batch_size) == ("onnxruntime_onnx", "", 0)
    assert "max_batch_size 0: the outputs are flat over the batch" in text
    assert not config.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in config.instance_group] == [(3, pb2.ModelInstanceGroup.KIND_CPU)]
    assert config.parameters["intra_op_thread_count"].string_value == "4"
    graph_inputs, graph_outputs = onnx_io(path)
    assert config_io(config, pb2) == (graph_inputs, graph_outputs)
    warm = warmup_inputs(config, pb2)
    assert {n: dtype for n, (dtype, _) in warm.items()} == {n: dtype for n, (dtype, _) in graph_inputs.items()}
    if shape == "fixed":
        assert warm == graph_inputs == {"images": ("TYPE_FP32", [2, 3, 320, 320]),
                                        "image_sizes": ("TYPE_INT64", [2, 2]),
                                        "original_sizes": ("TYPE_INT64", [2, 2])}
        assert graph_outputs["mask_probs"][1] == [-1, 28, 28] and graph_outputs["masks"] == ("TYPE_BOOL", [-1, -1, -1])
    else:
        n, c, h, w = warm["images"][1]
        assert (n, c) == (1, 3) and h % 32 == 0 and w % 32 == 0 and h >= 320 and w >= h
        assert warm["image_sizes"][1] == [1, 2]


@pytest.mark.parametrize("shape", ["dynamic", "fixed"])
def test_engine_net_config_from_the_sidecar(pb2, tiny_exports, tmp_path, shape):
    engine, profiles = fake_engine(tmp_path, tiny_exports[shape])
    config = parse_config(net_model_config("instseg_net", engine))
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 0)
    assert [g.kind for g in config.instance_group] == [pb2.ModelInstanceGroup.KIND_GPU]
    inputs, outputs = config_io(config, pb2)
    graph_inputs, graph_outputs = onnx_io(tiny_exports[shape])
    assert inputs == graph_inputs
    assert list(outputs) == list(graph_outputs)
    assert {n: t for n, (t, _) in outputs.items()} == {n: t for n, (t, _) in graph_outputs.items()}
    # the engine's known output shapes: the ONNX graph's where that is fixed (the dynamic export leaves the
    # mask side symbolic; the engine still has the mask head's 28x28)
    for name, (_, dims) in graph_outputs.items():
        assert all(g in (-1, e) for g, e in zip(dims, outputs[name][1])), name
    assert outputs["mask_probs"][1] == [-1, 28, 28]
    assert warmup_inputs(config, pb2) == {n: (inputs[n][0], profiles[n]["opt"]) for n in inputs}
    with pytest.raises(InstsegError, match="KIND_GPU"):
        net_model_config("instseg_net", engine, kind="KIND_CPU")


def test_openvino_ir_net_config(pb2, tiny_exports, tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from instseg_deploy.export.openvino_ir import export_openvino_ir
    from instseg_deploy.runtime.openvino import shared_core

    for shape in ("dynamic", "fixed"):
        xml = export_openvino_ir(tiny_exports[shape], tmp_path / shape / "model.xml").xml
        config = parse_config(net_model_config("instseg_net", xml, threads=2))
        assert (config.backend, config.platform, config.max_batch_size) == ("openvino", "", 0)
        assert config.parameters["INFERENCE_NUM_THREADS"].string_value == "2"
        inputs, outputs = config_io(config, pb2)
        # OpenVINO itself reads the same names, types and shapes (-1 where dynamic)
        model = shared_core().read_model(str(xml))
        assert (inputs, outputs) == (ov_table(model.inputs), ov_table(model.outputs))
        graph_inputs, graph_outputs = onnx_io(tiny_exports[shape])
        assert inputs == graph_inputs and list(outputs) == list(graph_outputs)
        n, c, h, w = warmup_inputs(config, pb2)["images"][1]
        if shape == "fixed":
            assert [n, c, h, w] == graph_inputs["images"][1] == [2, 3, 320, 320]
        else:
            assert (n, c, h % 32, w % 32) == (1, 3, 0, 0)
    with pytest.raises(InstsegError, match="KIND_CPU"):
        net_model_config("instseg_net", xml, kind="KIND_GPU")


def test_native_openvino_net_carries_the_geometry_outputs_its_config_leaves_out(pb2, tiny_exports, tmp_path):
    """Triton's openvino backend cannot ask for f32, so the served IR keeps the box geometry f32 under the
    plugin's default bf16 (serving.triton.openvino_net); the config lists the graph's outputs only."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    from instseg_deploy.export.openvino_ir import export_openvino_ir
    from instseg_deploy.runtime.openvino import shared_core
    from instseg_deploy.runtime.openvino_bf16 import ROI_ALIGN_TYPE
    from instseg_deploy.serving.triton.repository import RepositoryRequest, write_repository

    xml = export_openvino_ir(tiny_exports["dynamic"], tmp_path / "model.xml").xml
    source = shared_core().read_model(str(xml))
    roi_aligns = sum(op.get_type_name() == ROI_ALIGN_TYPE for op in source.get_ops())
    repository = write_repository(RepositoryRequest(xml, tmp_path / "repo", flavour="native"))
    served_xml = repository / "instseg_net" / "1" / "model.xml"
    served = shared_core().read_model(str(served_xml))
    graph_outputs = [p.get_any_name() for p in source.outputs]
    served_outputs = [p.get_any_name() for p in served.outputs]
    assert roi_aligns > 0 and served_outputs[:len(graph_outputs)] == graph_outputs
    assert len(served_outputs) == len(graph_outputs) + roi_aligns and all(served_outputs)
    assert read_model_file(served_xml).metadata == read_model_file(xml).metadata
    config = parse_config((repository / "instseg_net" / "config.pbtxt").read_text())
    assert list(config_io(config, pb2)[1]) == graph_outputs
    assert "HINT_BF16" in (repository / "README.md").read_text()
    # serving a served IR again adds nothing
    again = write_repository(RepositoryRequest(served_xml, tmp_path / "again", flavour="native"))
    assert len(shared_core().read_model(str(again / "instseg_net" / "1" / "model.xml")).outputs) == len(served_outputs)
    assert list(config_io(parse_config((again / "instseg_net" / "config.pbtxt").read_text()), pb2)[1]) == \
        graph_outputs


@pytest.fixture
def served_predictor(monkeypatch):
    """serving.triton.python_model.served_predictor, imported outside Triton's stub: the module imports the
    stub's triton_python_backend_utils at the top, which served_predictor never uses, so an empty stand-in
    module lets it import; the module is dropped again afterwards."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    name = "instseg_deploy.serving.triton.python_model"
    yield importlib.import_module(name).served_predictor
    sys.modules.pop(name, None)


def _python_model_parameters(repository) -> dict[str, str]:
    config = parse_config((repository / "instseg" / "config.pbtxt").read_text())
    return {key: value.string_value for key, value in config.parameters.items()}


def test_python_flavour_runs_openvino_at_the_requested_precision(pb2, tiny_exports, tmp_path,
                                                                  served_predictor):
    """--precision reaches the served runner (f32 on a BF16 CPU too, where auto may pick bf16); it is refused
    where nothing could honour it: another backend, or the native flavour (Triton's OpenVINO backend runs the
    plugin's default)."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    from instseg_deploy.errors import ServingError
    from instseg_deploy.export.openvino_ir import export_openvino_ir
    from instseg_deploy.runtime.openvino import cpu_capabilities, shared_core
    from instseg_deploy.serving.triton.repository import RepositoryRequest, write_repository

    xml = export_openvino_ir(tiny_exports["dynamic"], tmp_path / "model.xml").xml
    repository = write_repository(RepositoryRequest(xml, tmp_path / "repo", precision="f32", threads=1))
    parameters = _python_model_parameters(repository)
    assert parameters["backend"] == "openvino" and parameters["precision"] == "f32"
    assert served_predictor(parameters, repository / "instseg" / "1").runner.precision == "f32"
    bf16 = write_repository(RepositoryRequest(xml, tmp_path / "bf16", precision="bf16", threads=1))
    bf16_parameters = _python_model_parameters(bf16)
    native = "BF16" in cpu_capabilities(shared_core())
    assert served_predictor(bf16_parameters, bf16 / "instseg" / "1").runner.precision == ("bf16" if native else "f32")
    onnx_repo = write_repository(RepositoryRequest(tiny_exports["dynamic"], tmp_path / "onnx_repo"))
    assert "precision" not in _python_model_parameters(onnx_repo)  # ort runs the file's own precision
    onnx_bf16 = RepositoryRequest(tiny_exports["dynamic"], tmp_path / "r1", precision="bf16")
    refused = {"for the openvino backend": onnx_bf16,
               "needs the python flavour": RepositoryRequest(xml, tmp_path / "r2", flavour="native", precision="f32"),
               "--precision must be one of": RepositoryRequest(xml, tmp_path / "r3", precision="fp16")}
    for message, request in refused.items():
        with pytest.raises(ServingError, match=message):
            write_repository(request)
        assert not request.out.exists()


def test_plugin_note_only_for_engines_that_need_the_plugin(tiny_exports, tmp_path):
    (tmp_path / "plugin").mkdir()
    needs, _ = fake_engine(tmp_path / "plugin", tiny_exports["dynamic"], plugin_required=True)
    plain, _ = fake_engine(tmp_path, tiny_exports["dynamic"])
    note = plugin_note(needs)
    assert f"--backend-config=tensorrt,plugins=/path/to/{LIBRARY_NAME}" in note and "LD_PRELOAD" in note
    assert OP_TYPE in note and "10.9.0" in note and "ab" * 32 in note
    assert plugin_note(plain) is None and plugin_note(tiny_exports["dynamic"]) is None


def test_plugin_onnx_cannot_be_a_native_net(tmp_path, tiny_config_path):
    """Triton's ONNX Runtime backend has no RoIAlign plugin: a clear error, not a config Triton cannot load."""
    cfg = load_config(tiny_config_path)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    nodes = [helper.make_node(OP_TYPE, ["images"], ["boxes"], domain=ONNX_DOMAIN)]
    graph = helper.make_graph(nodes, "plugin", [helper.make_tensor_value_info("images", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, None)])
    model = helper.make_model(graph)
    for key, value in metadata_to_props(build_metadata(cfg, "raw", "dynamic", "dynamic", "plugin", ["images"],
                                                       ["boxes"])).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "plugin.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InstsegError, match="RoIAlign plugin"):
        net_model_config("instseg_net", path)


# ----------------------------------------------------------------------------- the wiring check


def test_wiring_check_finds_a_net_that_does_not_fit_its_graph(pb2, tiny_exports):
    path = tiny_exports["fixed"]
    graph_inputs, graph_outputs = net_tensors(path)
    python = python_model_config("instseg", 4, 1, 100, {NET_MODEL_PARAMETER: net_model_name("instseg")})
    net = net_model_config(net_model_name("instseg"), path)
    assert check_bls_wiring(python, net, graph_inputs, graph_outputs) == []

    renamed = net.replace('name: "mask_probs"', 'name: "mask_prob"')
    problems = check_bls_wiring(python, renamed, graph_inputs, graph_outputs)
    assert any("'mask_probs' is missing" in p for p in problems)
    assert any("'mask_prob' is not one of the graph's" in p for p in problems)
    assert len(problems) == 2

    retyped = net.replace("data_type: TYPE_INT64\n    dims: [ 2, 2 ]", "data_type: TYPE_INT32\n    dims: [ 2, 2 ]", 1)
    assert check_bls_wiring(python, retyped, graph_inputs, graph_outputs) == [
        "instseg_net: input 'image_sizes' is TYPE_INT32, the graph's is TYPE_INT64"]
    reshaped = net.replace("dims: [ -1, 28, 28 ]", "dims: [ -1, -1, -1 ]")
    assert check_bls_wiring(python, reshaped, graph_inputs, graph_outputs) == [
        "instseg_net: output 'mask_probs' has dims [-1, -1, -1], the graph's are [-1, 28, 28]"]
    batched = net.replace("max_batch_size: 0", "max_batch_size: 4")
    assert any("max_batch_size 4, must be 0" in p for p in check_bls_wiring(python, batched, graph_inputs,
                                                                              graph_outputs))
    elsewhere = python_model_config("instseg", 4, 1, 100, {NET_MODEL_PARAMETER: "other_net"})
    assert check_bls_wiring(elsewhere, net, graph_inputs, graph_outputs) == [
        "instseg: parameter 'net_model' is 'other_net', not 'instseg_net'"]


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("change, message", [
    (dict(name="../escape"), "model name"),
    (dict(platform="onnxruntime_onnx"), "exactly one of platform and backend"),
    (dict(inputs=(TensorSpec("X", "FP32", (0, 3)),)), "dims"),
    (dict(inputs=(TensorSpec("X", "FLOAT", (3,)),)), "unknown datatype"),
    (dict(outputs=(TensorSpec("Y", "FP32", (3,), optional=True),)), "for inputs"),
    (dict(max_batch_size=0, max_queue_delay_us=10), "dynamic batching"),
    (dict(kind="KIND_TPU"), "instance kind"),
    (dict(parameters={"threads": 4}), "string values"),
])
def test_render_refuses_configs_triton_would_reject(change, message):
    base = dict(name="m", max_batch_size=2, inputs=(TensorSpec("X", "FP32", (3,)),),
                outputs=(TensorSpec("Y", "FP32", (-1,)),), backend="python")
    render_config(ModelSpec(**base))
    with pytest.raises(InstsegError, match=message):
        render_config(ModelSpec(**{**base, **change}))


def test_python_model_config_refuses_bad_sizes():
    for args in ((0, 1, 0), (1, 0, 0), (1, 1, -5)):
        with pytest.raises(InstsegError):
            python_model_config("instseg", *args, {})


def test_parse_config_errors_are_one_line(pb2, monkeypatch):
    with pytest.raises(InstsegError, match="not a Triton model config"):
        parse_config('name: "m"\nmax_batch_size: "four"\n')
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # as if tritonclient were not installed
    with pytest.raises(InstsegError, match=r"pip install 'tritonclient\[grpc\]'"):
        parse_config('name: "m"\n')
