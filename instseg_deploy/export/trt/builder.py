"""TensorRT 10/11 engines from our exported ONNX: parse, profile, precision flags, calibration, build.

The TensorRT part follows the TensorRT 10 Python API: ``trt.Builder`` / ``create_network(0)``
(explicit batch is the only mode in 10.x, strong typing the only one in 11.x), ``trt.OnnxParser.parse_from_file``,
``IOptimizationProfile.set_shape``, ``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE,
...)``, ``set_flag(BuilderFlag...)``, timing caches, ``IProgressMonitor`` and
``build_serialized_network``. On 11.x (``TrtApi.strongly_typed``) no precision flag or calibrator exists:
the ONNX's tensor types are the precision (``engine_export`` converts it). What decides the inputs
(profiles: ``runtime.trt.profiles``, precision: ``precision``) is plain Python, tested without TensorRT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy.atomic import write_bytes
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.trt.calibrator import calibration_batches, calibration_range, make_entropy_calibrator
from instseg_deploy.export.trt.precision import PrecisionPlan, refuse_unbuildable
from instseg_deploy.export.trt.progress import BuildProgress, Cancelled, progress_monitor
from instseg_deploy.runtime.trt.plugin_library import PluginLibrary, load_plugin_library
from instseg_deploy.runtime.trt.profiles import IMAGE_INPUT, ShapeRange, input_profiles
from instseg_deploy.runtime.trt.util import make_logger, tensorrt_api, torch_dtype

log = logging.getLogger(__name__)


@dataclass
class BuildRequest:
    onnx_path: Path
    meta: dict[str, Any]
    profiles: dict[str, ShapeRange]
    precision: PrecisionPlan
    workspace_bytes: int | None = None
    timing_cache: Path | None = None
    plugin_library: PluginLibrary | None = None  # when the graph has our plugin node
    calib_images: list[Path] | None = None
    device_index: int = 0


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


def _use_timing_cache(config, path: Path) -> None:
    """Start from the cache file when it fits this GPU and TensorRT, else from an empty cache."""
    previous = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(previous) if previous else None
    if cache is None or not config.set_timing_cache(cache, False):  # False: refuse another device's timings
        if previous:
            log.warning("timing cache %s is from another GPU or TensorRT version; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def build_engine(request: BuildRequest, trt, progress: BuildProgress | None = None) -> memoryview:
    """Parse the ONNX file and build a serialized engine (bytes-like). Raises InstsegError with
    the parser's unsupported nodes or TensorRT's last error; KeyboardInterrupt when cancelled."""
    api = tensorrt_api(trt.__version__)
    # engine_export refuses these earlier with the user's paths; this keeps direct callers off removed APIs
    refuse_unbuildable(request.precision, api, str(request.onnx_path), "DIR", "model.engine")
    logger = make_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")  # TensorRT's own plugins (the ONNX RoiAlign importer uses one)
    if request.plugin_library is not None:
        load_plugin_library(trt, request.plugin_library)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # 10.x: explicit batch always; 11.x: also strongly typed always
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
    if not api.strongly_typed:  # 11.x removed the flags: the parsed ONNX's types are the precision
        for name in request.precision.flags:
            config.set_flag(getattr(trt.BuilderFlag, name))

    calibrator = None
    if request.precision.int8_mode == "calibration":
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

    cancelled = Cancelled()
    if progress is not None and hasattr(trt, "IProgressMonitor"):
        monitor = progress_monitor(trt, progress, cancelled)
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
