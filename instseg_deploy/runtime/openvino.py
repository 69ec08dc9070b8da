"""OpenVINO backend (CPU): an exported ``.onnx`` or OpenVINO IR (``.xml`` + ``.bin``) run as one graph.

A loader reads the model and its instseg metadata, picks the inference precision the CPU can
run (f32, or bf16 on CPUs with AVX512-BF16/AMX), and compiles it with
OpenVINO's model cache, so a second start skips compilation; a runner feeds preprocessed
batches. OpenVINO's own default on a BF16-capable CPU is bf16 everywhere, which costs AP: the
precision is therefore always set explicitly, and under bf16 the poolers' box geometry is kept f32
(``runtime.openvino_bf16``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy.cpu_isa import CpuIsa, cpu_isa
from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.metadata import FLOAT_PRE_POOL_KEY
from instseg_deploy.model_file.reader import ModelFile, read_model_file
from instseg_deploy.ops.roi_align_contract import OP_TYPE, uses_plugin
from instseg_deploy.processing.batching import fill_batch
from instseg_deploy.processing.graph_io import PASTED_MASKS, RAW_OUTPUTS
from instseg_deploy.processing.preprocess import Batch
from instseg_deploy.runtime.int8_saturation import warn_if_int8_saturates
from instseg_deploy.runtime.runner import RawDetections, fixed_input_shape

log = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16", "auto")
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
OPENVINO_INSTALL = "pip install openvino"
_core = None
_core_lock = threading.Lock()


class OpenVinoUnavailable(InstsegError):
    """OpenVINO is not installed (or cannot be imported) here."""


@dataclass(frozen=True)
class OpenVinoSettings:
    """How to compile: ``precision`` f32 | bf16 | auto (:func:`auto_precision`; bf16 only where the CPU
    has it), ``threads`` (0: OpenVINO's default, every core), ``hint`` latency | throughput (OpenVINO's
    performance hint: one stream for one request at a time, or several streams for parallel
    requests), ``cache`` the compiled-model cache (a second start of the same model is fast),
    ``roi_geometry`` the poolers' box geometry under bf16: f32 (runtime.openvino_bf16), or bf16 as
    the CPU plugin alone would run it (to measure what keeping it f32 changes)."""

    precision: str = "auto"
    threads: int = 0
    hint: str = "latency"
    cache: bool = True
    roi_geometry: str = "f32"

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise InstsegError(f"--precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.hint not in HINTS:
            raise InstsegError(f"--hint {self.hint!r} is not one of {', '.join(HINTS)}")
        if self.threads < 0:
            raise InstsegError(f"--threads must be >= 0, got {self.threads}")
        if self.roi_geometry not in ("f32", "bf16"):
            raise InstsegError(f"roi_geometry {self.roi_geometry!r} is not f32 or bf16")


def import_openvino():
    """The ``openvino`` module, or one line saying it is missing and how to install it."""
    try:
        import openvino
    except ImportError as e:
        detail = "" if e.name == "openvino" else f" ({e})"
        raise OpenVinoUnavailable(f"OpenVINO is not installed{detail}: {OPENVINO_INSTALL}") from None
    return openvino


def shared_core():
    """The process's one ``openvino.Core``, made on first use; every OpenVINO call here goes through it.

    Two Cores in one process are not safe: with a model compiled through each (openvino 2026.4.1), a later,
    unrelated test crashed pytest with SIGSEGV in 3 runs of 3, and in none of 3 with both compiled through
    one Core (others hit the same: ultralytics/ultralytics#25864).
    """
    global _core
    with _core_lock:
        if _core is None:
            _core = import_openvino().Core()
        return _core


def openvino_version(ov) -> str:
    """'2026.4.1' from the module's '2026.4.1-22982-e213a147257-releases/2026/4'."""
    return ov.__version__.split("-")[0]


def error_line(error: BaseException) -> str:
    """The last non-empty line of an OpenVINO exception (its messages end with the cause), shortened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def cpu_capabilities(core) -> tuple[str, ...]:
    """What OpenVINO's CPU plugin says it can compute here, e.g. ('BF16', 'FP32', 'INT8', ...)."""
    return tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def auto_precision(capabilities: tuple[str, ...], isa: CpuIsa) -> str:
    """What ``--precision auto`` compiles with: bf16 where it was measured to keep the model's AP, else f32.

    Measured (benchmarks/OPENVINO.md): with the box geometry kept f32, bf16 stays within 0.2 AP of f32 on
    eight sets (the fixture val set, seven generated ones) on an AVX512-BF16 CPU without AMX, where it runs
    the R50-FPN-3x model about 1.9x as fast as f32.
    On AMX CPUs -0.64 bbox AP was reported for OpenVINO's plain bf16 and ours is not measured yet: f32.
    """
    measured_bf16 = isa.features is not None and "AVX512-BF16" in isa.features and "AMX" in isa.missing
    return "bf16" if measured_bf16 and "BF16" in capabilities else "f32"


def resolve_precision(requested: str, capabilities: tuple[str, ...], isa: CpuIsa) -> str:
    """The inference precision to compile with: bf16 only where the CPU computes it natively.

    An explicit ``bf16`` on a CPU without it falls back to f32 and says so (OpenVINO would
    otherwise emulate or refuse it); ``auto`` is :func:`auto_precision`.
    """
    if requested == "bf16" and "BF16" not in capabilities:
        log.warning("bf16 requested, but this CPU has no native BF16 (OpenVINO reports %s): running f32",
                    ", ".join(capabilities) or "nothing")
        return "f32"
    if requested == "auto":
        return auto_precision(capabilities, isa)
    return requested


class OpenVinoRunner:
    """Runs preprocessed batches through one compiled model and one infer request."""

    name = "openvino"

    def __init__(self, compiled, meta: dict[str, Any], precision: str):
        self.compiled = compiled
        self.meta = meta
        self.precision = precision  # the inference precision it was compiled with: f32 or bf16
        self.request = compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in compiled.inputs]
        # OpenVINO may rename a tensor (an output gets the name of the node that produced it) but
        # keeps the exported name among its names. Outputs added only to steer precision
        # (runtime.openvino_bf16) are not read.
        wanted = {*RAW_OUTPUTS, PASTED_MASKS}
        self.outputs = {name: port for port in compiled.outputs if (name := _graph_name(port, wanted)) in wanted}
        self.max_batch, self.pad_to = fixed_input_shape(meta)

    def run(self, batch: Batch) -> RawDetections:
        feeds, n = fill_batch(batch, self.meta["preprocess"]["pixel_mean"], self.input_names,
                              batch_size=self.max_batch or 0)
        result = self.request.infer(feeds)  # copies the outputs (share_outputs=False)
        return RawDetections.from_graph_outputs({name: result[port] for name, port in self.outputs.items()}, n)


def _graph_name(port, wanted: set[str]) -> str:
    names = port.get_names()
    matching = sorted(names & wanted)
    return matching[0] if matching else port.get_any_name()


def load_openvino_runner(path: str | os.PathLike, settings: OpenVinoSettings | None = None,
                         config_fallback: dict[str, Any] | None = None) -> OpenVinoRunner:
    """Read ``path`` (.onnx or .xml), check it is one OpenVINO can run, compile it for the CPU."""
    from instseg_deploy.ops.native_build import cache_root

    settings = settings or OpenVinoSettings()
    settings.check()
    core = shared_core()  # first: a missing OpenVINO is the error to report
    path = Path(path)
    model_file = openvino_model_file(path, needs_metadata=config_fallback is None)
    meta = model_file.metadata if model_file.metadata is not None else config_fallback
    if meta.get("precision") == "int8" and FLOAT_PRE_POOL_KEY not in meta.get("int8", {}):
        raise InstsegError(f"{path} was quantized by an older instseg-deploy whose Q/DQ placement OpenVINO "
                           "mis-computes (the stem's Q/DQ before Relu -> MaxPool: about 4 AP lost); quantize the "
                           "FP32 model again with `instseg quantize`")
    warn_if_int8_saturates(meta, str(path), "OpenVINO")
    model = read_openvino_model(core, path, model_file.graph)
    precision = resolve_precision(settings.precision, cpu_capabilities(core), cpu_isa())
    if meta.get("precision", "fp32") != "fp32" and precision == "bf16":
        # An INT8 (or FP16) file already chose its precisions; bf16 on top would change them.
        precision = "f32"
    if precision == "bf16" and settings.roi_geometry == "f32":
        from instseg_deploy.runtime.openvino_bf16 import keep_roi_geometry_f32

        keep_roi_geometry_f32(model)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": HINTS[settings.hint]}
    if settings.threads:
        config["INFERENCE_NUM_THREADS"] = settings.threads
    if settings.cache:
        config["CACHE_DIR"] = str(cache_root() / "openvino")
    try:
        compiled = core.compile_model(model, "CPU", config)
    except RuntimeError as e:
        raise InstsegError(f"OpenVINO cannot compile {path}: {error_line(e)}") from None
    return OpenVinoRunner(compiled, meta, precision)


def openvino_model_file(path: Path, needs_metadata: bool = True) -> ModelFile:
    """``path``'s :class:`ModelFile` when OpenVINO can run it (an .onnx with standard ops, or an IR), with
    one-line errors for an engine, the plugin flavour and (``needs_metadata``) a file without metadata."""
    model_file = read_model_file(path)
    if model_file.format == "engine":
        raise InstsegError(f"{path} is a TensorRT engine; --backend openvino takes an exported .onnx or an "
                           "OpenVINO IR (.xml from `instseg export --to openvino`)")
    if model_file.graph is not None and uses_plugin(model_file.graph):
        raise InstsegError(f"{path} uses the {OP_TYPE} plugin node, which is TensorRT's; export with "
                           "--roi-align onnx (the default of --to onnx) for OpenVINO")
    if needs_metadata:
        model_file.require_metadata()
    return model_file


def read_openvino_model(core, path: Path, graph: Any = None):
    """``core.read_model`` with one-line errors (a truncated .bin, a broken .xml, a foreign file).

    ``graph``: the file's ONNX ModelProto when it is one. A Q/DQ graph is read in the layout
    OpenVINO fuses (``runtime.openvino_qdq``), from memory; the file itself is not changed.
    """
    source: str | bytes = str(path)
    if graph is not None and _is_inline_qdq(graph):
        from onnx import ModelProto

        from instseg_deploy.runtime.openvino_qdq import drop_float_only_output_pairs, share_qdq_pairs

        layout = ModelProto()
        layout.CopyFrom(graph)
        merged, dropped = share_qdq_pairs(layout), drop_float_only_output_pairs(layout)
        log.debug("%s: %d copies of a Q/DQ pair merged, %d output pairs only float layers read dropped",
                  path, merged, dropped)
        source = layout.SerializeToString()
    try:
        return core.read_model(source)
    except RuntimeError as e:
        raise InstsegError(f"OpenVINO cannot read {path}: {error_line(e)}") from None


def write_openvino_model(model, xml: Path, destination: Path | None = None) -> None:
    """``model`` as an IR at ``xml`` (+ its .bin), weights kept f32 (``save_model`` would compress them to
    f16 by default), with a one-line error naming ``destination`` (default ``xml``; a staged write names
    where the file is going)."""
    try:
        import_openvino().save_model(model, str(xml), compress_to_fp16=False)
    except RuntimeError as e:
        raise InstsegError(f"OpenVINO could not write {destination or xml}: {error_line(e)}") from None


def _is_inline_qdq(graph) -> bool:
    """A Q/DQ ONNX graph whose weights are inside the ModelProto (not in external data files)."""
    from onnx import TensorProto

    return any(n.op_type == "QuantizeLinear" for n in graph.graph.node) and \
        not any(i.data_location == TensorProto.EXTERNAL for i in graph.graph.initializer)
