"""The config.pbtxt of a served model: Triton's ModelConfig in protobuf text format, and its checks.

Two models may be served (serving.triton.repository): the Python-backend model ``NAME``
(runtime.triton.contract's tensors, batching requests itself) and, in the native flavour, the
network as the Triton-native model ``NAME_net`` (onnxruntime_onnx, tensorrt_plan or openvino),
which ``NAME`` calls through BLS. The net's config names exactly the exported graph's inputs and
outputs (processing.graph_io) with the dims and datatypes its file declares.

Configs are written by hand, deterministically, without protobuf: a server without tritonclient
can still write a repository. :func:`parse_config` reads one back with Triton's own
``model_config_pb2`` (tritonclient), for tests and repository checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.reader import ModelFile, read_model_file
from instseg_deploy.ops.roi_align_contract import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION, uses_plugin
from instseg_deploy.processing.graph_io import IMAGE_SIZES, IMAGES, ORIGINAL_SIZES, PASTED_MASKS, RAW_OUTPUTS
from instseg_deploy.runtime.runner import fixed_input_shape
from instseg_deploy.runtime.triton.contract import DATATYPES, DIMS, INPUTS, OUTPUTS
from instseg_deploy.runtime.trt.plugin_library import BUILD_COMMAND, LIBRARY_NAME
from instseg_deploy.runtime.trt.profiles import default_size_range

KINDS = ("KIND_CPU", "KIND_GPU")
NET_SUFFIX = "_net"  # the native flavour's network model: NAME + NET_SUFFIX
NET_MODEL_PARAMETER = "net_model"  # Python model's parameter naming the net it calls through BLS
# Tensor datatypes Triton knows, in the KServe v2 names (config.pbtxt writes TYPE_ + the name).
DATATYPE_NAMES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                  "FP64", "BF16")
# onnx.TensorProto.DataType values -> datatype.
_ONNX_DATATYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL",
                   10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64", 16: "BF16"}
# OpenVINO IR port precisions -> datatype.
_IR_DATATYPES = {"FP32": "FP32", "FP16": "FP16", "BF16": "BF16", "FP64": "FP64", "BOOL": "BOOL", "U8": "UINT8",
                 "U16": "UINT16", "U32": "UINT32", "U64": "UINT64", "I8": "INT8", "I16": "INT16", "I32": "INT32",
                 "I64": "INT64"}
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a model name is also its folder's name


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``dims`` without the batch dimension when max_batch_size > 0 (-1: variable)."""

    name: str
    datatype: str  # in DATATYPE_NAMES
    dims: tuple[int, ...]
    optional: bool = False  # inputs only: a request may leave it out
    allow_ragged_batch: bool = False  # inputs only: batched requests may differ in shape


@dataclass(frozen=True)
class Warmup:
    """One warm-up request of zeros: ``inputs`` with full shapes (all dims positive)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    batch_size: int = 1  # Triton's rule for a model without batching (max_batch_size 0): 1


@dataclass(frozen=True)
class ModelSpec:
    """Everything :func:`render_config` writes. Exactly one of ``platform`` and ``backend``;
    ``max_queue_delay_us`` None: no dynamic batching; ``notes``: comment lines at the top."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str | None = None
    backend: str | None = None
    instances: int = 1
    kind: str = "KIND_CPU"
    max_queue_delay_us: int | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    warmup: tuple[Warmup, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetFormat:
    """How Triton serves one kind of exported file natively."""

    format: str  # ModelFile.format: "onnx", "openvino" or "engine"
    platform: str | None
    backend: str | None
    files: tuple[str, ...]  # names in the version folder; the first is the model file
    kinds: tuple[str, ...]  # instance kinds its backend runs on
    threads_parameter: str | None  # backend parameter for the number of CPU threads
    notes: tuple[str, ...] = ()  # what its backend decides that the config cannot (config comments, README)


# Triton's openvino backend has no parameter for f32: its HINT_BF16 takes only YES (serving.triton.openvino_net).
OPENVINO_PRECISION_NOTES = (
    "Triton's OpenVINO backend runs the CPU plugin's default precision: bf16 on CPUs with AVX512-BF16 or AMX,",
    "f32 elsewhere (its HINT_BF16 parameter can only ask for bf16). model.xml has one extra output per RoIAlign",
    "(its box input) so that bf16 keeps the box geometry f32, as `--backend openvino --precision bf16` does;",
    "nothing reads them. An INT8 IR's float layers run bf16 there too (`--backend openvino` keeps them f32).",
    "For f32 on a BF16 CPU, serve the python flavour.")

NET_FORMATS = {
    "onnx": NetFormat("onnx", "onnxruntime_onnx", None, ("model.onnx",), KINDS, "intra_op_thread_count"),
    "engine": NetFormat("engine", "tensorrt_plan", None, ("model.plan",), ("KIND_GPU",), None),
    # KIND_GPU means an NVIDIA GPU to Triton; OpenVINO picks Intel devices with its TARGET_DEVICE parameter.
    "openvino": NetFormat("openvino", None, "openvino", ("model.xml", "model.bin"), ("KIND_CPU",),
                          "INFERENCE_NUM_THREADS", OPENVINO_PRECISION_NOTES),
}


# ----------------------------------------------------------------------------- rendering


def _quote(text: str) -> str:
    """A protobuf text-format string literal; non-ASCII as octal UTF-8 bytes, so the file is ASCII."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\{byte:03o}"))
    return '"' + "".join(out) + '"'


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _check_tensor(spec: TensorSpec, what: str, full_shape: bool = False) -> None:
    if not spec.name:
        raise InstsegError(f"{what}: a tensor needs a name")
    if spec.datatype not in DATATYPE_NAMES:
        raise InstsegError(f"{what} {spec.name!r}: unknown datatype {spec.datatype!r}")
    if not spec.dims or any(not isinstance(d, int) or d == 0 or d < -1 or (full_shape and d < 1) for d in spec.dims):
        raise InstsegError(f"{what} {spec.name!r}: dims {list(spec.dims)} must be "
                           + ("positive" if full_shape else "positive or -1") + " (at least one)")


def _tensor_block(spec: TensorSpec, indent: str) -> list[str]:
    lines = [f"{indent}{{", f"{indent}  name: {_quote(spec.name)}", f"{indent}  data_type: TYPE_{spec.datatype}",
             f"{indent}  dims: {_dims(spec.dims)}"]
    if spec.optional:
        lines.append(f"{indent}  optional: true")
    if spec.allow_ragged_batch:
        lines.append(f"{indent}  allow_ragged_batch: true")
    return lines + [f"{indent}}}"]


def _tensor_list(key: str, specs: Sequence[TensorSpec]) -> list[str]:
    lines = [f"{key} ["]
    for i, spec in enumerate(specs):
        block = _tensor_block(spec, "  ")
        if i < len(specs) - 1:
            block[-1] += ","
        lines += block
    return lines + ["]"]


def render_config(spec: ModelSpec) -> str:
    """config.pbtxt text of ``spec``: the same spec always gives the same text (parameters sorted by key)."""
    if not MODEL_NAME.match(spec.name):
        raise InstsegError(f"model name {spec.name!r}: letters, digits, '_', '-', '.' (64 at most)")
    if (spec.platform is None) == (spec.backend is None):
        raise InstsegError(f"model {spec.name!r}: give exactly one of platform and backend")
    if spec.max_batch_size < 0 or spec.instances < 1:
        raise InstsegError(f"model {spec.name!r}: max_batch_size must be >= 0 and instances >= 1")
    if spec.kind not in KINDS:
        raise InstsegError(f"instance kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    if spec.max_queue_delay_us is not None and (spec.max_queue_delay_us < 0 or spec.max_batch_size < 1):
        raise InstsegError(f"model {spec.name!r}: dynamic batching needs max_batch_size >= 1 and a delay >= 0")
    for tensors, what in ((spec.inputs, "input"), (spec.outputs, "output")):
        if not tensors:
            raise InstsegError(f"model {spec.name!r} needs at least one {what}")
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            raise InstsegError(f"model {spec.name!r}: repeated {what} names in {names}")
        for tensor in tensors:
            _check_tensor(tensor, what)
    for tensor in spec.outputs:
        if tensor.optional or tensor.allow_ragged_batch:
            raise InstsegError(f"output {tensor.name!r}: optional and allow_ragged_batch are for inputs")

    lines = [f"# {note}" if note else "#" for text in spec.notes for note in text.splitlines() or [""]]
    lines.append(f"name: {_quote(spec.name)}")
    lines.append(f"platform: {_quote(spec.platform)}" if spec.platform else f"backend: {_quote(spec.backend)}")
    lines.append(f"max_batch_size: {spec.max_batch_size}")
    lines += _tensor_list("input", spec.inputs)
    lines += _tensor_list("output", spec.outputs)
    lines += ["instance_group [", "  {", f"    count: {spec.instances}", f"    kind: {spec.kind}", "  }", "]"]
    if spec.max_queue_delay_us is not None:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}", "}"]
    for key in sorted(spec.parameters):
        value = spec.parameters[key]
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InstsegError(f"model {spec.name!r}: parameters are non-empty string keys with string values, "
                               f"got {key!r}: {type(value).__name__}")
        lines += ["parameters {", f"  key: {_quote(key)}", f"  value: {{ string_value: {_quote(value)} }}", "}"]
    for warmup in spec.warmup:
        if warmup.batch_size < 1:
            raise InstsegError(f"warm-up {warmup.name!r}: batch_size must be >= 1")
        lines += ["model_warmup {", f"  name: {_quote(warmup.name)}", f"  batch_size: {warmup.batch_size}"]
        for tensor in warmup.inputs:
            _check_tensor(tensor, "warm-up input", full_shape=True)
            lines += ["  inputs {", f"    key: {_quote(tensor.name)}", "    value {",
                      f"      data_type: TYPE_{tensor.datatype}", f"      dims: {_dims(tensor.dims)}",
                      "      zero_data: true", "    }", "  }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the Python-backend model


def python_tensors() -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of the Python-backend model, from runtime.triton.contract (dims without the batch).

    Both inputs are optional (a request gives one) and ragged (requests differ in size; the model
    batches the requests it is given itself, so Triton never concatenates them).
    """
    inputs = tuple(TensorSpec(n, DATATYPES[n], DIMS[n], optional=True, allow_ragged_batch=True) for n in INPUTS)
    return inputs, tuple(TensorSpec(n, DATATYPES[n], DIMS[n]) for n in OUTPUTS)


def python_model_config(name: str, max_batch: int, instances: int, max_queue_delay_us: int,
                        parameters: Mapping[str, str], kind: str = "KIND_CPU") -> str:
    """config.pbtxt of the Python-backend model ``name``: up to ``max_batch`` requests per execution,
    gathered for at most ``max_queue_delay_us``, on ``instances`` instances of ``kind``.
    ``parameters``: string key/values the model reads (model_file, backend, threads, the metadata JSON, ...)."""
    if max_batch < 1:
        raise InstsegError(f"the maximum batch must be at least 1, got {max_batch}")
    if instances < 1:
        raise InstsegError(f"the number of instances must be at least 1, got {instances}")
    if max_queue_delay_us < 0:
        raise InstsegError(f"the maximum queue delay must be >= 0 microseconds, got {max_queue_delay_us}")
    inputs, outputs = python_tensors()
    return render_config(ModelSpec(name, max_batch, inputs, outputs, backend="python", instances=instances, kind=kind,
                                   max_queue_delay_us=max_queue_delay_us, parameters=dict(parameters)))


# ----------------------------------------------------------------------------- the network model


def net_model_name(name: str) -> str:
    """The native flavour's network model called by the Python-backend model ``name``."""
    return name + NET_SUFFIX


def _model_file(model_file: ModelFile | str | os.PathLike) -> ModelFile:
    return model_file if isinstance(model_file, ModelFile) else read_model_file(model_file)


def net_format(model_file: ModelFile | str | os.PathLike) -> NetFormat:
    """The Triton platform/backend that serves ``model_file`` (.onnx, OpenVINO .xml, TensorRT engine)."""
    model_file = _model_file(model_file)
    if model_file.format == "onnx" and uses_plugin(model_file.graph):
        raise InstsegError(f"{model_file.path} uses instseg's RoIAlign plugin ({OP_TYPE}), which Triton's ONNX Runtime "
                           "backend cannot run: serve the standard-ops export (`--roi-align onnx`) or a TensorRT "
                           "engine built from this file")
    return NET_FORMATS[model_file.format]


def _onnx_tensor(value: Any, source: Path) -> TensorSpec:
    tensor_type = value.type.tensor_type
    datatype = _ONNX_DATATYPES.get(tensor_type.elem_type)
    if datatype is None:
        raise InstsegError(f"{source}: tensor {value.name!r} has ONNX element type {tensor_type.elem_type}, "
                           "which Triton cannot serve")
    # A symbolic or missing dim is variable (-1), as ONNX Runtime reports it to Triton.
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim)
    return TensorSpec(value.name, datatype, dims)


def _ir_tensors(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Parameters and Results of an OpenVINO IR .xml, read as XML (no OpenVINO needed)."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as e:
        raise InstsegError(f"{path} is not a readable OpenVINO IR ({e})") from None
    layers = root.findall("./layers/layer")
    by_id = {layer.get("id"): layer for layer in layers}
    edges = {(e.get("to-layer"), e.get("to-port")): (e.get("from-layer"), e.get("from-port"))
             for e in root.findall("./edges/edge")}

    def spec(name: str | None, port: Any, what: str) -> TensorSpec:
        datatype = _IR_DATATYPES.get(port.get("precision", "") if port is not None else "")
        if not name or datatype is None:
            raise InstsegError(f"{path}: cannot read the name and precision of an IR {what}")
        dims = []
        for dim in port.findall("dim"):
            try:
                dims.append(max(int(dim.text or ""), -1))
            except ValueError:  # an interval such as 1..8: variable to Triton
                dims.append(-1)
        return TensorSpec(name, datatype, tuple(dims))

    inputs, outputs = [], []
    for layer in layers:
        if layer.get("type") == "Parameter":
            port = layer.find("./output/port")
            names = (port.get("names") or layer.get("name") or "") if port is not None else ""
            inputs.append(spec(names.split(",")[0].strip(), port, "input"))
        elif layer.get("type") == "Result":
            port = layer.find("./input/port")
            name = layer.get("output_names")
            if not name and port is not None:  # older IRs name the tensor on the producing port
                source = edges.get((layer.get("id"), port.get("id")))
                producer = by_id.get(source[0]) if source else None
                ports = producer.findall("./output/port") if producer is not None else []
                name = next((p.get("names") for p in ports if p.get("id") == source[1]), None)
            outputs.append(spec((name or "").split(",")[0].strip(), port, "output"))
    return tuple(inputs), tuple(outputs)


def _mask_resolution(meta: Mapping[str, Any], source: str) -> int:
    """Side of the mask head's output: twice its pooler resolution (the head's 2x deconvolution)."""
    from instseg_deploy.config import config_from_tree, tree_from_text

    config = config_from_tree(tree_from_text(meta["config"], source), source, warn_unknown=False)
    return 2 * config.model.mask_head.pooler.resolution


def _engine_tensors(model_file: ModelFile) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """An engine's inputs and outputs from its metadata: the graph_io names with their known shapes
    (an engine has no readable graph here; TensorRT keeps the ONNX file's I/O types)."""
    meta = model_file.require_metadata()
    batch, size = fixed_input_shape(meta)
    n = batch or -1
    height, width = size or (-1, -1)
    known_inputs = {IMAGES: ("FP32", (n, 3, height, width)), IMAGE_SIZES: ("INT64", (n, 2)),
                    ORIGINAL_SIZES: ("INT64", (n, 2))}
    resolution = _mask_resolution(meta, str(model_file.path))
    boxes, scores, classes, batch_idx, mask_probs = RAW_OUTPUTS
    known_outputs = {boxes: ("FP32", (-1, 4)), scores: ("FP32", (-1,)), classes: ("INT64", (-1,)),
                     batch_idx: ("INT64", (-1,)), mask_probs: ("FP32", (-1, resolution, resolution)),
                     PASTED_MASKS: ("BOOL", (-1, -1, -1))}
    found = []
    for names, known, what in ((meta.get("inputs"), known_inputs, "inputs"), (meta.get("outputs"), known_outputs,
                                                                                  "outputs")):
        unknown = [n for n in names or () if n not in known]
        if not names or unknown:
            raise InstsegError(f"{model_file.path}: the metadata's {what} {names} are not an instseg export's "
                               f"({', '.join(known)})")
        found.append(tuple(TensorSpec(n, *known[n]) for n in names))
    return found[0], found[1]


def net_tensors(model_file: ModelFile | str | os.PathLike) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of an exported network as its file declares them: full shapes (batch dim
    included, -1 where variable). ONNX from the graph, IR from its .xml, an engine from its metadata."""
    model_file = _model_file(model_file)
    if model_file.format == "onnx":
        graph = model_file.graph.graph
        weights = {init.name for init in graph.initializer}
        return (tuple(_onnx_tensor(v, model_file.path) for v in graph.input if v.name not in weights),
                tuple(_onnx_tensor(v, model_file.path) for v in graph.output))
    if model_file.format == "openvino":
        inputs, outputs = _ir_tensors(model_file.path)
        # The graph's own outputs: an IR may also have outputs that only steer its precision (openvino_net).
        served = (model_file.metadata or {}).get("outputs")
        return inputs, tuple(t for t in outputs if t.name in served) if served else outputs
    return _engine_tensors(model_file)


def _warmup(model_file: ModelFile, inputs: Sequence[TensorSpec]) -> Warmup:
    """One request of zeros: a fixed-shape model at its shape, else the engine profile's opt shape
    (the sizes TensorRT tuned for) or one opt-sized image (a 4:3 photo, padded; see default_size_range)."""
    meta = model_file.require_metadata()
    profiles = (model_file.sidecar or {}).get("profiles") or {}
    if all(s.name in profiles for s in inputs):
        shapes = {s.name: tuple(int(d) for d in profiles[s.name]["opt"]) for s in inputs}
    else:
        batch, size = fixed_input_shape(meta)
        height, width = size or default_size_range(meta)[1]
        shapes = {s.name: (batch or 1, 3, height, width) if s.name == IMAGES else (batch or 1, *s.dims[1:])
                  for s in inputs}
    tensors = tuple(TensorSpec(s.name, s.datatype, shapes[s.name]) for s in inputs)
    return Warmup("zeros " + "x".join(map(str, shapes[IMAGES] if IMAGES in shapes else tensors[0].dims)), tensors)


def net_model_config(name: str, model_file: ModelFile | str | os.PathLike, instances: int = 1,
                     kind: str | None = None, threads: int | None = None) -> str:
    """config.pbtxt of the network model ``name`` (conventionally :func:`net_model_name` of the served
    model) for ``model_file``; ``kind`` None: the format's first (KIND_GPU for an engine);
    ``threads``: CPU threads of ONNX Runtime / OpenVINO (None or 0: the backend's default)."""
    model_file = _model_file(model_file)
    fmt = net_format(model_file)
    kind = kind or fmt.kinds[0]
    if kind not in fmt.kinds:
        raise InstsegError(f"{model_file.path} ({fmt.platform or fmt.backend}) runs on {' or '.join(fmt.kinds)} "
                           f"instances, not {kind}")
    if instances < 1:
        raise InstsegError(f"the number of instances must be at least 1, got {instances}")
    inputs, outputs = net_tensors(model_file)
    parameters = {fmt.threads_parameter: str(threads)} if threads and fmt.threads_parameter else {}
    notes = ("max_batch_size 0: the outputs are flat over the batch (batch_idx says which image a detection",
             "belongs to), which Triton's batcher cannot split per request; dims are full shapes and the",
             "Python-backend model batches requests itself before calling this model through BLS.", *fmt.notes)
    return render_config(ModelSpec(name, 0, inputs, outputs, platform=fmt.platform, backend=fmt.backend,
                                   instances=instances, kind=kind, parameters=parameters,
                                   warmup=(_warmup(model_file, inputs),), notes=notes))


def plugin_note(model_file: ModelFile | str | os.PathLike) -> str | None:
    """README text for a repository whose engine needs our RoIAlign plugin; None when nothing needs it.

    Triton loads plugin libraries from ``--backend-config=tensorrt,plugins=...`` or LD_PRELOAD, never
    from config.pbtxt, so whoever starts the server must pass the library.
    """
    model_file = _model_file(model_file)
    library = (model_file.sidecar or {}).get("plugin_library") or {}
    if model_file.format != "engine" or not library.get("required"):
        return None
    recorded = f" (built as `{library['path']}`" if library.get("path") else ""
    if recorded and library.get("sha256"):
        recorded += f", SHA-256 {library['sha256']}"
    recorded += ")" if recorded else ""
    version = model_file.sidecar.get("tensorrt_version", "?")
    return "\n".join([
        "## TensorRT plugin",
        "",
        f"The engine contains instseg's RoIAlign plugin ({OP_TYPE}, version {PLUGIN_VERSION!r}, namespace "
        f"{PLUGIN_NAMESPACE!r}), which lives in `{LIBRARY_NAME}`{recorded}. Triton does not load plugin libraries "
        "from config.pbtxt: start the server with the library, built for TensorRT "
        f"{version} like the engine, either as",
        "",
        f"    tritonserver --model-repository=. --backend-config=tensorrt,plugins=/path/to/{LIBRARY_NAME}",
        "",
        f"or with `LD_PRELOAD=/path/to/{LIBRARY_NAME} tritonserver ...`. Build it in an instseg-deploy checkout with",
        "",
        f"    {BUILD_COMMAND}",
    ])


# ----------------------------------------------------------------------------- reading and checking


def parse_config(text: str) -> Any:
    """config.pbtxt text -> Triton's ``inference.ModelConfig`` message (needs tritonclient)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise InstsegError("reading config.pbtxt needs tritonclient: pip install 'tritonclient[grpc]'") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise InstsegError(f"not a Triton model config: {e}") from None


def _parsed(config: Any) -> Any:
    return parse_config(config) if isinstance(config, str) else config


def _tensor_problems(model: str, what: str, config_tensors: Sequence[Any], expected: Sequence[TensorSpec]) -> list[str]:
    """Differences of a config's tensors from ``expected``: names, datatypes, and dims axis by axis
    (equal where expected is fixed, -1 where it is variable: Triton's ONNX Runtime and OpenVINO
    backends refuse -1 for a fixed axis)."""
    have = {t.name: t for t in config_tensors}
    want = {t.name: t for t in expected}
    problems = [f"{model}: {what} {n!r} is missing (the graph has it)" for n in want if n not in have]
    problems += [f"{model}: {what} {n!r} is not one of the graph's ({', '.join(want)})" for n in have if n not in want]
    for name in (n for n in want if n in have):
        tensor, spec = have[name], want[name]
        datatype = tensor.DESCRIPTOR.fields_by_name["data_type"].enum_type.values_by_number[tensor.data_type].name
        if datatype != f"TYPE_{spec.datatype}":
            problems.append(f"{model}: {what} {name!r} is {datatype}, the graph's is TYPE_{spec.datatype}")
        dims = tuple(tensor.dims)
        if len(dims) != len(spec.dims) or any(d != (g if g > 0 else -1) for d, g in zip(dims, spec.dims)):
            problems.append(f"{model}: {what} {name!r} has dims {list(dims)}, the graph's are {list(spec.dims)}")
    return problems


def check_python_config(python_config: Any) -> list[str]:
    """What is wrong with a Python-backend model's config (text or parsed) against the tensor contract."""
    config = _parsed(python_config)
    problems = [] if config.backend == "python" else [f"{config.name}: backend is {config.backend!r}, not 'python'"]
    if config.max_batch_size < 1:
        problems.append(f"{config.name}: max_batch_size {config.max_batch_size} (must be >= 1)")
    inputs, outputs = python_tensors()
    problems += _tensor_problems(config.name, "input", config.input, inputs)
    problems += _tensor_problems(config.name, "output", config.output, outputs)
    for tensor in config.input:
        if tensor.name in INPUTS and not (tensor.optional and tensor.allow_ragged_batch):
            problems.append(f"{config.name}: input {tensor.name!r} must be optional and allow_ragged_batch")
    return problems


def check_bls_wiring(python_config: Any, net_config: Any, graph_inputs: Sequence[TensorSpec],
                     graph_outputs: Sequence[TensorSpec]) -> list[str]:
    """What is wrong with a native-flavour pair of configs (texts or parsed): the Python model must
    name the net it calls, and the net's inputs/outputs must be exactly the graph's (``net_tensors``:
    names, datatypes, dims) with max_batch_size 0. An empty list: the wiring holds."""
    python, net = _parsed(python_config), _parsed(net_config)
    problems = check_python_config(python)
    if net.name != net_model_name(python.name):
        problems.append(f"the net model is {net.name!r}, not {net_model_name(python.name)!r}")
    called = python.parameters[NET_MODEL_PARAMETER].string_value if NET_MODEL_PARAMETER in python.parameters else None
    if called != net.name:
        problems.append(f"{python.name}: parameter {NET_MODEL_PARAMETER!r} is {called!r}, not {net.name!r}")
    if net.max_batch_size != 0:
        problems.append(f"{net.name}: max_batch_size {net.max_batch_size}, must be 0 (outputs are flat over the "
                        "batch; the Python model batches)")
    if not (net.platform or net.backend):
        problems.append(f"{net.name}: names neither a platform nor a backend")
    problems += _tensor_problems(net.name, "input", net.input, graph_inputs)
    problems += _tensor_problems(net.name, "output", net.output, graph_outputs)
    return problems
