"""TensorRT 10 engines from our exported ONNX: optimisation profiles, precision, calibration, build.

Everything up to the TensorRT calls is plain Python (profile resolution from the CLI flags,
precision/flag mapping) and is tested without TensorRT. The TensorRT part follows the TensorRT 10
Python API: ``trt.Builder`` / ``create_network(0)`` (explicit batch is the only mode in 10.x),
``trt.OnnxParser.parse_from_file``, ``IOptimizationProfile.set_shape``,
``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, ``set_flag(BuilderFlag...)``,
timing caches, ``IProgressMonitor`` and ``build_serialized_network``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from instseg_deploy.atomic import write_bytes
from instseg_deploy.errors import InstsegError

DEFAULT_MAX_BATCH = 8
DEFAULT_CALIB_IMAGES = 256
IMAGE_INPUT = "images"
SIZE_INPUTS = ("image_sizes", "original_sizes")  # (N, 2) int64, one row per image
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


# ----------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max shape of one input in an optimisation profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @staticmethod
    def from_json(data: dict[str, list[int]]) -> "ShapeRange":
        return ShapeRange(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


def parse_dims(text: str, what: str) -> tuple[int, ...]:
    """'1x3x800x1344' -> (1, 3, 800, 1344)."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InstsegError(f"{what} must be dimensions joined by 'x' like 1x3x800x1344, got {text!r}") from None
    if any(d < 1 for d in dims):
        raise InstsegError(f"{what} dimensions must be positive, got {text!r}")
    return dims


def _triple(text: str, what: str, parse_one) -> tuple[Any, Any, Any]:
    """'A' (fixed) or 'MIN:OPT:MAX'."""
    parts = text.split(":")
    if len(parts) == 1:
        value = parse_one(parts[0])
        return value, value, value
    if len(parts) == 3:
        return tuple(parse_one(p) for p in parts)  # type: ignore[return-value]
    raise InstsegError(f"{what} must be one value or MIN:OPT:MAX, got {text!r}")


def _batch_value(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InstsegError(f"--batch values must be positive integers, got {text!r}")
    return int(text)


def _size_value(text: str) -> tuple[int, int]:
    dims = parse_dims(text, "--size")
    if len(dims) != 2:
        raise InstsegError(f"--size values must be HxW like 800x1344, got {text!r}")
    return dims  # type: ignore[return-value]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple if multiple > 1 else value


def default_size_range(meta: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(min, opt, max) padded input sizes that cover every image the preprocessing can produce.

    Resizing gives a short side of at most MIN_SIZE_TEST and a long side of at most
    MAX_SIZE_TEST (a very elongated image can have a much shorter short side), padded to the
    size divisibility; opt is a 4:3 landscape image, the most common photo shape.
    """
    p = meta["preprocess"]
    d = max(int(p["size_divisibility"]), 1)
    step = d if d > 1 else 32
    short, long = int(p["min_size"]), int(p["max_size"])
    opt = (_round_up(min(short, long), step), _round_up(min(long, int(short * 4 / 3 + 0.5)), step))
    largest = _round_up(long, step)
    return (step, step), opt, (largest, largest)


def resolve_image_range(meta: dict[str, Any], batch: str = "dynamic", size: str = "dynamic",
                        min_shape: str | None = None, opt_shape: str | None = None,
                        max_shape: str | None = None) -> ShapeRange:
    """The (N, 3, H, W) range of the ``images`` input from the CLI flags and the model's metadata.

    Either ``--min-shape/--opt-shape/--max-shape`` (all three, NxCxHxW) or ``--batch`` and
    ``--size``, each 'dynamic' (defaults below), one value (fixed) or MIN:OPT:MAX. Defaults: a
    model exported with a fixed batch or size keeps it; otherwise batch 1:1:8 and the sizes of
    :func:`default_size_range`. H and W must be multiples of the size divisibility, since the
    shared preprocessing always pads to one.
    """
    explicit = (min_shape, opt_shape, max_shape)
    if any(s is not None for s in explicit):
        if any(s is None for s in explicit):
            raise InstsegError("--min-shape, --opt-shape and --max-shape go together (all three, NxCxHxW)")
        if batch != "dynamic" or size != "dynamic":
            raise InstsegError("give either --min-shape/--opt-shape/--max-shape or --batch/--size, not both")
        shapes = [parse_dims(s, flag) for s, flag in zip(explicit, ("--min-shape", "--opt-shape", "--max-shape"))]
        for shape, flag in zip(shapes, ("--min-shape", "--opt-shape", "--max-shape")):
            if len(shape) != 4 or shape[1] != 3:
                raise InstsegError(f"{flag} must be Nx3xHxW (the images input), got {'x'.join(map(str, shape))}")
        image_range = ShapeRange(*shapes)
    else:
        model_batch, model_size = meta.get("batch", "dynamic"), meta.get("size", "dynamic")
        if batch != "dynamic":
            batches = _triple(batch, "--batch", _batch_value)
        elif isinstance(model_batch, int):
            batches = (model_batch,) * 3
        else:
            batches = (1, 1, DEFAULT_MAX_BATCH)
        if size != "dynamic":
            sizes = _triple(size, "--size", _size_value)
        elif isinstance(model_size, list):
            sizes = (tuple(model_size),) * 3
        else:
            sizes = default_size_range(meta)
        image_range = ShapeRange(*((n, 3, *hw) for n, hw in zip(batches, sizes)))
    _check_image_range(image_range, meta)
    return image_range


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _check_image_range(r: ShapeRange, meta: dict[str, Any]) -> None:
    if not all(lo <= mid <= hi for lo, mid, hi in zip(r.min, r.opt, r.max)):
        raise InstsegError(f"the shapes must satisfy min <= opt <= max in every dimension, got "
                           f"{_fmt(r.min)} / {_fmt(r.opt)} / {_fmt(r.max)}")
    d = int(meta["preprocess"]["size_divisibility"])
    if d > 1:
        for shape, name in ((r.min, "min"), (r.opt, "opt"), (r.max, "max")):
            if shape[2] % d or shape[3] % d:
                raise InstsegError(f"the {name} size {shape[2]}x{shape[3]} must be a multiple of {d} (the model "
                                   f"pads every input to one), e.g. {_round_up(shape[2], d)}x{_round_up(shape[3], d)}")
    model_batch, model_size = meta.get("batch", "dynamic"), meta.get("size", "dynamic")
    if isinstance(model_batch, int) and {r.min[0], r.opt[0], r.max[0]} != {model_batch}:
        raise InstsegError(f"the ONNX model has a fixed batch of {model_batch}; the profile must use it "
                           "(re-export with --batch dynamic for a range)")
    if isinstance(model_size, list) and {r.min[2:], r.opt[2:], r.max[2:]} != {tuple(model_size)}:
        raise InstsegError(f"the ONNX model has a fixed input size {model_size[0]}x{model_size[1]}; the profile must "
                           "use it (re-export with --size dynamic for a range)")


def input_profiles(image_range: ShapeRange, input_names: list[str]) -> dict[str, ShapeRange]:
    """Per-input ranges: ``images`` (N, 3, H, W) and the (N, 2) size inputs the graph has."""
    unknown = [n for n in input_names if n != IMAGE_INPUT and n not in SIZE_INPUTS]
    if IMAGE_INPUT not in input_names or unknown:
        raise InstsegError(f"the ONNX model's inputs {input_names} are not an instseg export's "
                           f"({IMAGE_INPUT}, {', '.join(SIZE_INPUTS)})")
    profiles = {IMAGE_INPUT: image_range}
    for name in SIZE_INPUTS:
        if name in input_names:
            profiles[name] = ShapeRange((image_range.min[0], 2), (image_range.opt[0], 2), (image_range.max[0], 2))
    return profiles


def profiles_json(profiles: dict[str, ShapeRange]) -> dict[str, dict[str, list[int]]]:
    return {name: r.as_json() for name, r in profiles.items()}


# ----------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class PrecisionPlan:
    precision: str  # "fp32", "fp16" or "int8" (int8 may fall back to fp16 where --fp16 is also given)
    flags: tuple[str, ...]  # trt.BuilderFlag member names
    int8_mode: str | None  # "explicit" (Q/DQ nodes in the model), "calibration" (--calib) or None


def is_qdq_model(proto, meta: dict[str, Any]) -> bool:
    """A model quantized with Q/DQ nodes (`instseg quantize` writes those, metadata precision "int8")."""
    return meta.get("precision") == "int8" or any(node.op_type in QDQ_OPS for node in proto.graph.node)


def resolve_precision(fp16: bool, int8: bool, calib: str | os.PathLike | None, qdq_model: bool) -> PrecisionPlan:
    """Builder flags from --fp16 / --int8 / --calib and whether the model is already quantized.

    A Q/DQ model is built with INT8 explicitly (its scales are in the graph; --int8 is implied);
    --int8 on a float model needs --calib DIR for TensorRT's implicit entropy calibration
    (deprecated since TensorRT 10.1, kept as a fallback). --fp16 with INT8 lets the layers that
    are not quantized run in FP16 instead of FP32.
    """
    extra = ("FP16",) if fp16 else ()
    if qdq_model:
        if calib is not None:
            raise InstsegError("the model is already quantized (Q/DQ nodes from `instseg quantize`); "
                               "--calib is only for float models")
        return PrecisionPlan("int8", ("INT8",) + extra, "explicit")
    if calib is not None and not int8:
        raise InstsegError("--calib is used with --int8 (INT8 calibration images)")
    if int8:
        if calib is None:
            raise InstsegError("--int8 needs a quantized model (`instseg quantize`, Q/DQ nodes) or --calib DIR "
                               "with calibration images for TensorRT's own calibration")
        return PrecisionPlan("int8", ("INT8",) + extra, "calibration")
    if fp16:
        return PrecisionPlan("fp16", ("FP16",), None)
    return PrecisionPlan("fp32", (), None)


def calibration_range(image_range: ShapeRange) -> ShapeRange:
    """The fixed shape TensorRT calibrates at: the smallest batch and the largest size, so that
    every calibration image fits after resizing (TensorRT calibrates one shape only)."""
    shape = (image_range.min[0], 3, image_range.max[2], image_range.max[3])
    return ShapeRange(shape, shape, shape)


# ----------------------------------------------------------------------------- TensorRT


class BuildProgress(Protocol):
    """What the builder reports (TensorRT's IProgressMonitor phases, plus calibration)."""

    def phase_start(self, phase: str, parent: str | None, num_steps: int) -> None: ...

    def step(self, phase: str, step: int) -> None: ...

    def phase_finish(self, phase: str) -> None: ...


@dataclass
class BuildRequest:
    onnx_path: Path
    meta: dict[str, Any]
    profiles: dict[str, ShapeRange]
    precision: PrecisionPlan
    workspace_bytes: int | None = None
    timing_cache: Path | None = None
    plugin_library: Any = None  # trt_plugin_lib.PluginLibrary when the graph has our plugin node
    calib_images: list[Path] | None = None
    device_index: int = 0


class _Cancelled:
    """Set from the progress monitor when the user presses Ctrl-C during a build."""

    def __init__(self):
        self.flag = False


def make_logger(trt):
    """A TensorRT logger that prints warnings and errors and keeps the errors for our messages."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.lock = threading.Lock()

        def log(self, severity, msg):
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= int(trt.ILogger.Severity.ERROR):
                with self.lock:
                    self.errors.append(str(msg))
            if level <= int(trt.ILogger.Severity.WARNING):
                from instseg_deploy.cli.common import console

                console.print(f"[dim]TensorRT: {msg}[/]", highlight=False, soft_wrap=True)

    return CollectingLogger()


def _progress_monitor(trt, sink: BuildProgress, cancelled: _Cancelled):
    """trt.IProgressMonitor forwarding to ``sink``; Ctrl-C during a step cancels the build."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            sink.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            try:
                sink.step(phase_name, step)
            except KeyboardInterrupt:
                cancelled.flag = True
            return not cancelled.flag  # False asks TensorRT to stop the build

        def phase_finish(self, phase_name):
            sink.phase_finish(phase_name)

    return Monitor()


def parse_failure(parser, onnx_path: Path) -> InstsegError:
    """One error naming the nodes TensorRT's ONNX parser rejected (unsupported ops first)."""
    unsupported, other = [], []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        code = getattr(error.code(), "name", str(error.code()))
        where = f"{error.node_name() or '?'} ({error.node_operator() or '?'})"
        (unsupported if code.startswith("UNSUPPORTED") else other).append(f"{where}: {error.desc()}")
    if unsupported:
        return InstsegError(f"TensorRT cannot import {len(unsupported)} node(s) of {onnx_path.name}: "
                            + "; ".join(unsupported[:8]) + (" ..." if len(unsupported) > 8 else ""))
    detail = "; ".join(other[:4]) or "no details (see the TensorRT log above)"
    return InstsegError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {detail}")


def _builder_flag(trt, name: str):
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise InstsegError(f"TensorRT {trt.__version__} has no BuilderFlag.{name} (weakly-typed precision flags were "
                           "removed after TensorRT 10); use TensorRT 10.x")
    return flag


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
                 "INT8": "int8", "UINT8": "uint8", "BF16": "bfloat16"}


def torch_dtype(trt_dtype):
    """torch dtype of a ``trt.DataType`` (by member name: FLOAT, HALF, INT32, INT64, BOOL, ...)."""
    import torch

    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in _TORCH_DTYPES:
        raise InstsegError(f"TensorRT tensor type {name} has no torch equivalent here")
    return getattr(torch, _TORCH_DTYPES[name])


def calibration_batches(paths: list[Path], meta: dict[str, Any], input_names: list[str], calib: ShapeRange,
                        sink: BuildProgress | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for TensorRT's calibrator: each image through the shared preprocessing, padded to the
    calibration shape (N copies of it when the profile's smallest batch is N > 1)."""
    from instseg_deploy.export.metadata import preprocess_params
    from instseg_deploy.quantize.calibration import ImageCalibrationReader

    phase = "INT8 calibration images"

    def on_image(done: int, total: int) -> None:
        if sink is not None:
            sink.step(phase, done - 1)

    reader = ImageCalibrationReader(paths, preprocess_params(meta), input_names, pad_to=calib.max[2:],
                                    fixed_batch=calib.max[0], on_image=on_image)
    if sink is not None:
        sink.phase_start(phase, None, len(paths))
    yield from reader
    if sink is not None:
        sink.phase_finish(phase)


def make_entropy_calibrator(trt, batches: Iterator[dict[str, np.ndarray]], input_dtypes: dict[str, Any],
                            batch_size: int, device_index: int = 0):
    """trt.IInt8EntropyCalibrator2 fed from ``batches`` through torch CUDA tensors.

    TensorRT calls ``get_batch(names)`` until it returns None; the returned device pointers must
    stay valid until the next call, so the tensors are kept on the calibrator. Exceptions inside
    the callbacks are swallowed by TensorRT's bindings, so the first one is kept and re-raised
    after the build. No calibration cache is written: a cache silently reused for another model
    or image set would be wrong, and calibrating a few hundred images is cheap next to the build.
    """
    import torch

    device = torch.device("cuda", device_index)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: BaseException | None = None
            self.current: dict[str, torch.Tensor] = {}

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            try:
                feeds = next(batches, None)
                if feeds is None:
                    return None
                self.current = {name: torch.from_numpy(np.ascontiguousarray(feeds[name])).to(
                    device, dtype=input_dtypes[name]) for name in names}
                torch.cuda.synchronize(device)
                return [int(self.current[name].data_ptr()) for name in names]
            except BaseException as e:  # noqa: BLE001 -- re-raised after the build
                self.error = self.error or e
                return None

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            return None

    return EntropyCalibrator()


def _use_timing_cache(config, path: Path) -> None:
    """Start from the cache file when it fits this GPU and TensorRT, else from an empty cache."""
    from instseg_deploy.cli.common import console

    previous = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(previous) if previous else None
    if cache is None or not config.set_timing_cache(cache, False):  # False: refuse another device's timings
        if previous:
            console.print(f"[yellow]note:[/] timing cache {path} is from another GPU or TensorRT version; "
                          "starting a new one", highlight=False)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def build_engine(request: BuildRequest, trt, progress: BuildProgress | None = None) -> memoryview:
    """Parse the ONNX file and build a serialized engine (bytes-like). Raises InstsegError with
    the parser's unsupported nodes or TensorRT's last error; KeyboardInterrupt when cancelled."""
    from instseg_deploy.backends.trt_plugin_lib import load_plugin_library

    logger = make_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")  # TensorRT's own plugins (the ONNX RoiAlign importer uses one)
    if request.plugin_library is not None:
        load_plugin_library(trt, request.plugin_library)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch always, no flag needed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(request.onnx_path)):
        raise parse_failure(parser, request.onnx_path)
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if set(inputs) != set(request.profiles):
        raise InstsegError(f"the network's inputs {sorted(inputs)} do not match the profile's "
                           f"{sorted(request.profiles)}")

    config = builder.create_builder_config()
    if request.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, r in request.profiles.items():
        profile.set_shape(name, r.min, r.opt, r.max)
    config.add_optimization_profile(profile)
    for name in request.precision.flags:
        config.set_flag(_builder_flag(trt, name))

    calibrator = None
    if request.precision.int8_mode == "calibration":
        if not hasattr(config, "int8_calibrator"):
            raise InstsegError(f"TensorRT {trt.__version__} has no implicit INT8 calibration; quantize the model "
                               "with `instseg quantize` (Q/DQ) and build without --calib")
        calib = calibration_range(request.profiles[IMAGE_INPUT])
        calib_profile = builder.create_optimization_profile()
        for name, r in input_profiles(calib, list(request.profiles)).items():
            calib_profile.set_shape(name, r.min, r.opt, r.max)
        config.set_calibration_profile(calib_profile)
        dtypes = {name: torch_dtype(tensor.dtype) for name, tensor in inputs.items()}
        batches = calibration_batches(request.calib_images or [], request.meta, list(inputs), calib, progress)
        calibrator = make_entropy_calibrator(trt, batches, dtypes, calib.max[0], request.device_index)
        config.int8_calibrator = calibrator

    if request.timing_cache is not None:
        _use_timing_cache(config, request.timing_cache)

    cancelled = _Cancelled()
    if progress is not None and hasattr(trt, "IProgressMonitor"):
        monitor = _progress_monitor(trt, progress, cancelled)
        config.progress_monitor = monitor  # TensorRT needs it alive for the whole build

    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.error is not None:
        raise calibrator.error
    if cancelled.flag:
        raise KeyboardInterrupt
    if serialized is None:
        last = logger.errors[-1] if logger.errors else "no error message (see the TensorRT log above)"
        raise InstsegError(f"TensorRT could not build the engine: {last}")
    if request.timing_cache is not None:
        write_bytes(request.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return memoryview(serialized)
