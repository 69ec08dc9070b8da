"""An exported ONNX model (or a checkpoint, exported on the fly) to a TensorRT engine + its sidecar.

Order of work: argument checks, TensorRT (so a machine without it gets one clear error, the same as
`bench --backend trt`, before any model is read and with nothing written), the checks that need the
model's metadata, what else the machine must have (a CUDA GPU, the plugin library for plugin-flavoured
graphs), then the ONNX export (to a temporary folder), on TensorRT 11.x the FP16 conversion (a strongly typed
build takes its precision from the ONNX), parse, build and the atomic writes. Progress goes to an
:class:`EngineExportProgress`; `instseg export --to trt` draws it, library callers may pass None.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from instseg_deploy.atomic import write_bytes
from instseg_deploy.data.calibration import calibration_images
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.onnx_export import DEFAULT_OPSET
from instseg_deploy.export.trt.builder import BuildRequest, build_engine
from instseg_deploy.export.trt.calibrator import DEFAULT_CALIB_IMAGES
from instseg_deploy.export.trt.precision import PrecisionPlan, is_qdq_model, refuse_unbuildable, resolve_precision
from instseg_deploy.export.trt.progress import BuildProgress
from instseg_deploy.model_file.reader import read_model_file
from instseg_deploy.model_file.sidecar import build_sidecar, file_sha256, write_sidecar
from instseg_deploy.ops.roi_align_contract import uses_plugin
from instseg_deploy.runtime.trt.plugin_library import find_plugin_library
from instseg_deploy.runtime.trt.profiles import ShapeRange, input_profiles, profiles_json, resolve_image_range
from instseg_deploy.runtime.trt.sidecar import current_device_info
from instseg_deploy.runtime.trt.util import import_tensorrt, tensorrt_api

log = logging.getLogger(__name__)

# TensorRT's INMSLayer considers at most this many boxes per batch item, and our graph runs NMS on
# the whole batch as one item (export/trt/NMS.md): an engine is exact only while a batch has fewer.
NMS_CANDIDATE_LIMIT = 5000

ONNX_STAGE = "export-onnx"  # tracing the checkpoint to a temporary ONNX file
FP16_STAGE = "convert-fp16"  # TensorRT 11.x: the FP16 ONNX a strongly typed build needs
BUILD_STAGE = "build"  # TensorRT's build (its phases follow through BuildProgress)


@dataclass(frozen=True)
class TrtExportRequest:
    """What `instseg export --to trt` asks for: the source, the profile, the precision, the files.

    The source is ``model`` (an ``instseg export --to onnx`` file) or ``config`` + ``weights``
    (exported on the fly with ``opset``/``masks``/``roi_align``). The profile comes from either
    ``batch``/``size`` (each 'dynamic', one value, or MIN:OPT:MAX) or ``min/opt/max_shape``.
    """

    out: Path
    model: Path | None = None
    config: Path | None = None
    weights: Path | None = None
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None  # calibration image folder for TensorRT's own INT8 calibration
    batch: str = "dynamic"
    size: str = "dynamic"
    min_shape: str | None = None
    opt_shape: str | None = None
    max_shape: str | None = None
    workspace_gib: float | None = None  # None: TensorRT's default (the GPU's memory)
    timing_cache: Path | None = None
    plugin_lib: Path | None = None
    opset: int = DEFAULT_OPSET
    masks: str = "raw"
    roi_align: str = "plugin"  # on-the-fly export: "plugin" (needs libinstseg_plugins.so) or "onnx"
    overrides: tuple[str, ...] = ()  # detectron2 KEY VALUE config overrides of an on-the-fly export

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gib is None else int(self.workspace_gib * 2**30)


@dataclass(frozen=True)
class TrtExportResult:
    engine: Path
    sidecar: Path
    size_bytes: int
    precision: PrecisionPlan
    profiles: dict[str, ShapeRange]


class EngineExportProgress(BuildProgress, Protocol):
    """Build progress plus the stages around it: ``stage(ONNX_STAGE | BUILD_STAGE, one-line message)``."""

    def stage(self, name: str, message: str) -> None: ...


# (FP32 model, FP16 output path) -> anything: `instseg quantize --fp16`'s conversion, quantize.fp16.convert_fp16.
# Passed in by the caller because quantize imports export (stage names), so export cannot import quantize.
Fp16Converter = Callable[[Path, Path], object]


def check_request(request: TrtExportRequest) -> None:
    """The argument errors that need no file reading, TensorRT or GPU."""
    out, model = request.out, request.model
    if (model is None) == (request.weights is None and request.config is None):
        raise InstsegError("--to trt needs either --model model.onnx or --config/--weights (one of them)")
    if model is not None and not model.is_file():
        raise InstsegError(f"model file not found: {model}")
    if model is not None and out.resolve() == model.resolve():
        raise InstsegError("--out must not be the input model")
    if out.suffix.lower() == ".onnx":
        raise InstsegError(f"--out {out} is a TensorRT engine, not ONNX: name it .engine")
    if request.workspace_gib is not None and request.workspace_gib <= 0:
        raise InstsegError(f"--workspace must be a positive number of GiB, got {request.workspace_gib}")
    if request.timing_cache is not None and request.timing_cache.exists() and not request.timing_cache.is_file():
        raise InstsegError(f"--timing-cache {request.timing_cache} is not a file")
    if request.calib is not None and not request.calib.is_dir():
        raise InstsegError(f"--calib {request.calib} is not a folder of images")


def _image_range(request: TrtExportRequest, meta: dict[str, Any]) -> ShapeRange:
    return resolve_image_range(meta, request.batch, request.size, request.min_shape, request.opt_shape,
                               request.max_shape)


def _fp16_onnx_refusal(request: TrtExportRequest, version: str, why: str) -> InstsegError:
    model = request.model or "model.onnx"
    return InstsegError(f"TensorRT {version} builds FP16 only from an FP16 ONNX ({why}): convert it with "
                        f"instseg quantize --model {model} --fp16 --out model.fp16.onnx, then "
                        f"instseg export --to trt --model model.fp16.onnx --out {request.out}")


def export_trt_engine(request: TrtExportRequest, progress: EngineExportProgress | None = None,
                      fp16_converter: Fp16Converter | None = None) -> TrtExportResult:
    """Build ``request.out`` and its sidecar ``request.out``.json; see the module docstring for the order.

    ``fp16_converter``: what turns the FP32 ONNX into the FP16 one a TensorRT 11.x ``--fp16`` build needs
    (``quantize.fp16.convert_fp16``); without it such a build is refused with the two commands to run."""
    check_request(request)
    trt = import_tensorrt()  # before any model is read, as `bench --backend trt` does
    api = tensorrt_api(trt.__version__)
    model_precision = "fp32"
    if request.model is not None:
        model_file = read_model_file(request.model)
        meta = model_file.require_metadata(
            "export it with `instseg export --to onnx`, or build from --config/--weights")
        plan = resolve_precision(request.fp16, request.int8, request.calib, is_qdq_model(model_file.graph, meta))
        image_range = _image_range(request, meta)
        needs_plugin = uses_plugin(model_file.graph)
        model_precision = meta.get("precision", "fp32")
    else:
        plan = resolve_precision(request.fp16, request.int8, request.calib, qdq_model=False)
        needs_plugin = request.roi_align == "plugin"
    refuse_unbuildable(plan, api, str(request.model or "model.onnx"), str(request.calib or "DIR"), str(request.out))
    convert = api.strongly_typed and plan.precision == "fp16" and model_precision != "fp16"
    if convert and needs_plugin:  # our FP16 conversion takes the standard-ops export only
        raise _fp16_onnx_refusal(request, api.version, "our FP16 conversion needs the --roi-align onnx export, "
                                                       "not the plugin flavour")
    if convert and fp16_converter is None:
        raise _fp16_onnx_refusal(request, api.version, "no FP16 conversion was given to this export")

    device = current_device_info(0)
    library = find_plugin_library(request.plugin_lib) if needs_plugin or request.plugin_lib is not None else None
    calib_paths = None
    if plan.int8_mode == "calibration":
        calib_paths = calibration_images(images=request.calib, num_images=DEFAULT_CALIB_IMAGES)

    with tempfile.TemporaryDirectory(prefix="instseg-trt-") as tmp:
        onnx_path = request.model
        if onnx_path is None:
            if progress is not None:
                progress.stage(ONNX_STAGE, "tracing and exporting to ONNX")
            onnx_path, meta = _export_onnx(request, Path(tmp) / "model.onnx")
            image_range = _image_range(request, meta)
            source = f"{request.weights} (exported with --roi-align {request.roi_align}, --masks {request.masks})"
        else:
            source = str(onnx_path)
        if convert:
            if progress is not None:
                progress.stage(FP16_STAGE, f"converting to FP16 for TensorRT {api.version}'s strongly typed build")
            fp16_path = Path(tmp) / "model.fp16.onnx"
            fp16_converter(onnx_path, fp16_path)
            onnx_path, source = fp16_path, f"{source} (converted to FP16 as `instseg quantize --fp16` does)"
        profiles = input_profiles(image_range, list(meta["inputs"]))
        if image_range.max[0] > 1:
            log.warning("this engine takes batches of up to %d images; TensorRT's NMS keeps only the %d best of "
                        "each NMS call's candidates (2000 on SM 5.3/6.2) and this graph's NMS covers the whole "
                        "batch, so a batch with more candidates together (at 800x1333, about one image's RPN "
                        "proposals) may lose proposals; batches of 1 are exact (--batch 1 builds for those only; "
                        "export/trt/NMS.md)", image_range.max[0], NMS_CANDIDATE_LIMIT)
        build = BuildRequest(onnx_path, meta, profiles, plan, request.workspace_bytes, request.timing_cache, library,
                             calib_paths)
        if progress is not None:
            progress.stage(BUILD_STAGE, f"building a TensorRT {trt.__version__} engine ({plan.precision}) for "
                                        f"{device.name} (compute capability {device.compute_capability}); "
                                        "this takes minutes")
        serialized = build_engine(build, trt, progress)

    sidecar = build_sidecar(meta, engine_sha256=hashlib.sha256(serialized).hexdigest(),
                            tensorrt_version=trt.__version__, device=device, precision=plan.precision,
                            builder_flags=[] if api.strongly_typed else list(plan.flags), int8_mode=plan.int8_mode,
                            profiles=profiles_json(profiles),
                            plugin_library=None if library is None else str(library.path),
                            plugin_required=needs_plugin, source_onnx=source,
                            workspace_bytes=request.workspace_bytes,
                            plugin_sha256=None if library is None else file_sha256(library.path))
    # how the precision was obtained: the model's types (11.x), or builder flags on a weakly typed network (10.x)
    sidecar["strongly_typed"] = api.strongly_typed
    sidecar_file = _write_engine(request.out, serialized, sidecar)
    return TrtExportResult(request.out, sidecar_file, request.out.stat().st_size, plan, profiles)


def _export_onnx(request: TrtExportRequest, path: Path) -> tuple[Path, dict[str, Any]]:
    """Export with dynamic batch and size (the engine's profile narrows them); (path, metadata)."""
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    net, cfg = load_model(request.config, request.weights, overrides=request.overrides)
    export_onnx(net, cfg, path, opset=request.opset, masks=request.masks, roi_align=request.roi_align)
    return path, read_model_file(path).require_metadata()


def _write_engine(out: Path, serialized, sidecar: dict[str, Any]) -> Path:
    """Engine then sidecar, each atomically; a failed sidecar takes the engine with it."""
    write_bytes(out, serialized)
    try:
        return write_sidecar(out, sidecar)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
