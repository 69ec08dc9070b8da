"""`instseg export --to trt`: an ONNX model (ours, or exported on the fly) to a TensorRT engine + sidecar.

`cli/export.py` owns the options and calls :func:`export_trt_command` for ``--to trt``. Order of
work: argument checks, then what the machine must have (TensorRT, a CUDA GPU, the plugin library
for plugin-flavoured graphs) -- so a machine without TensorRT gets one line and nothing is
written -- then the ONNX export (to a temporary folder), parse, build and the atomic writes.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from instseg_deploy.cli.common import console
from instseg_deploy.errors import InstsegError


class RichBuildProgress:
    """TensorRT's build phases (and calibration) as progress bars, indented by nesting depth."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}
        self.depth: dict[str, int] = {}

    def phase_start(self, phase: str, parent: Optional[str], num_steps: int) -> None:
        self.depth[phase] = self.depth.get(parent, -1) + 1 if parent else 0
        label = "  " * self.depth[phase] + phase
        self.totals[phase] = max(num_steps, 1)
        self.tasks[phase] = self.progress.add_task(label, total=self.totals[phase])

    def step(self, phase: str, step: int) -> None:
        if phase in self.tasks:
            self.progress.update(self.tasks[phase], completed=step + 1)

    def phase_finish(self, phase: str) -> None:
        task = self.tasks.pop(phase, None)
        if task is not None:
            if self.depth.get(phase, 0) == 0:
                self.progress.update(task, completed=self.totals[phase])
            else:
                self.progress.remove_task(task)  # keep the display to the top-level phases


def _build_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _check_arguments(out: Path, model: Optional[Path], weights: Optional[Path], workspace: Optional[float],
                     timing_cache: Optional[Path], calib: Optional[Path]) -> None:
    if (model is None) == (weights is None):
        raise InstsegError("--to trt needs either --model model.onnx or --config/--weights (one of them)")
    if model is not None and not model.is_file():
        raise InstsegError(f"model file not found: {model}")
    if model is not None and out.resolve() == model.resolve():
        raise InstsegError("--out must not be the input model")
    if out.suffix.lower() == ".onnx":
        raise InstsegError(f"--out {out} is a TensorRT engine, not ONNX: name it .engine")
    if workspace is not None and workspace <= 0:
        raise InstsegError(f"--workspace must be a positive number of GiB, got {workspace}")
    if timing_cache is not None and timing_cache.exists() and not timing_cache.is_file():
        raise InstsegError(f"--timing-cache {timing_cache} is not a file")
    if calib is not None and not calib.is_dir():
        raise InstsegError(f"--calib {calib} is not a folder of images")


def export_trt_command(out: Path, model: Optional[Path] = None, config: Optional[Path] = None,
                       weights: Optional[Path] = None, fp16: bool = False, int8: bool = False,
                       calib: Optional[Path] = None, batch: str = "dynamic", size: str = "dynamic",
                       min_shape: Optional[str] = None, opt_shape: Optional[str] = None,
                       max_shape: Optional[str] = None, workspace: Optional[float] = None,
                       timing_cache: Optional[Path] = None, plugin_lib: Optional[Path] = None,
                       opset: int = 17, masks: str = "raw", roi_align: Optional[str] = None) -> None:
    """Build ``out`` (+ ``out``.json) from ``model`` or from ``config`` + ``weights``.

    ``roi_align``: for an on-the-fly export, "plugin" (default: our RoIAlign plugin, needs
    libinstseg_plugins.so) or "onnx" (standard RoiAlign ops, no plugin library).
    """
    from instseg_deploy.backends.ort_backend import read_onnx_metadata
    from instseg_deploy.backends.trt_plugin_lib import find_plugin_library, onnx_needs_plugin
    from instseg_deploy.export.metadata import METADATA_KEY, parse_metadata
    from instseg_deploy.export.trt_build import (DEFAULT_CALIB_IMAGES, BuildRequest, input_profiles, is_qdq_model,
                                                 resolve_image_range, resolve_precision)
    from instseg_deploy.export.trt_sidecar import current_device_info, import_tensorrt

    _check_arguments(out, model, weights, workspace, timing_cache, calib)
    roi_align = roi_align or "plugin"
    if model is not None:
        props, proto = read_onnx_metadata(model)
        if METADATA_KEY not in props:
            raise InstsegError(f"{model} has no instseg metadata (classes, preprocessing); export it with "
                               "`instseg export --to onnx`, or build from --config/--weights")
        meta = parse_metadata(props, str(model))
        plan = resolve_precision(fp16, int8, calib, is_qdq_model(proto, meta))
        image_range = resolve_image_range(meta, batch, size, min_shape, opt_shape, max_shape)
        needs_plugin = onnx_needs_plugin(proto)
    else:
        plan = resolve_precision(fp16, int8, calib, qdq_model=False)
        needs_plugin = roi_align == "plugin"

    trt = import_tensorrt()
    device = current_device_info(0)
    library = find_plugin_library(plugin_lib) if needs_plugin or plugin_lib is not None else None
    calib_paths = None
    if plan.int8_mode == "calibration":
        from instseg_deploy.quantize.calibration import calibration_images

        calib_paths = calibration_images(images=calib, num_images=DEFAULT_CALIB_IMAGES)

    with tempfile.TemporaryDirectory(prefix="instseg-trt-") as tmp:
        if model is None:
            model, meta, image_range = _export_onnx(config, weights, Path(tmp) / "model.onnx", opset, masks, roi_align,
                                                    batch, size, min_shape, opt_shape, max_shape)
            source = f"{weights} (exported with --roi-align {roi_align}, --masks {masks})"
        else:
            source = str(model)
        profiles = input_profiles(image_range, list(meta["inputs"]))
        request = BuildRequest(model, meta, profiles, plan, None if workspace is None else int(workspace * 2**30),
                               timing_cache, library, calib_paths)
        console.print(f"building a TensorRT {trt.__version__} engine ({plan.precision}) for {device.name} "
                      f"(compute capability {device.compute_capability}); this takes minutes", highlight=False)
        with _build_progress() as progress:
            from instseg_deploy.export.trt_build import build_engine

            serialized = build_engine(request, trt, RichBuildProgress(progress))
    _write_engine(out, serialized, meta, trt.__version__, device, plan, profiles, library, needs_plugin, source,
                  request)


def _export_onnx(config, weights, path: Path, opset: int, masks: str, roi_align: str, batch, size, min_shape,
                 opt_shape, max_shape):
    """Export dynamic batch and size (the engine's profile narrows them) and resolve the profile."""
    from instseg_deploy.backends.ort_backend import read_onnx_metadata
    from instseg_deploy.export.metadata import parse_metadata
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.export.trt_build import resolve_image_range
    from instseg_deploy.model_files import load_model

    net, cfg = load_model(config, weights)
    with console.status("tracing and exporting to ONNX"):
        export_onnx(net, cfg, path, opset=opset, masks=masks, roi_align=roi_align)
    props, _ = read_onnx_metadata(path)
    meta = parse_metadata(props, str(path))
    return path, meta, resolve_image_range(meta, batch, size, min_shape, opt_shape, max_shape)


def _write_engine(out: Path, serialized, meta, trt_version, device, plan, profiles, library, needs_plugin: bool,
                  source: str, request) -> None:
    """Engine then sidecar, each atomically; a failed sidecar takes the engine with it."""
    from instseg_deploy.atomic import write_bytes
    from instseg_deploy.export.trt_build import profiles_json
    from instseg_deploy.export.trt_sidecar import build_sidecar, write_sidecar

    write_bytes(out, serialized)
    try:
        sidecar = build_sidecar(meta, engine_sha256=hashlib.sha256(serialized).hexdigest(),
                                tensorrt_version=trt_version, device=device, precision=plan.precision,
                                builder_flags=list(plan.flags), int8_mode=plan.int8_mode,
                                profiles=profiles_json(profiles),
                                plugin_library=None if library is None else str(library.path),
                                plugin_required=needs_plugin,
                                source_onnx=source, workspace_bytes=request.workspace_bytes)
        sidecar_file = write_sidecar(out, sidecar)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    images = profiles["images"]
    console.print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {plan.precision}, images "
                  f"{'x'.join(map(str, images.min))} .. {'x'.join(map(str, images.max))}) and {sidecar_file.name}",
                  highlight=False)
