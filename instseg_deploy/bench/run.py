"""A benchmark run: every (backend/model, batch, threads) row measured against the machine's compute peak
for the row's own precision (f32 sgemm; bf16 and int8 GEMMs and convolutions through OpenVINO), all measured
in the run."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from instseg_deploy.bench.flops import (
    GemmPeak,
    count_gflops,
    measure_gpu_peak_gflops,
    measure_openvino_peak,
    measure_peak_gflops,
)
from instseg_deploy.bench.inputs import generated_images, resized_copies
from instseg_deploy.bench.machine import machine_info
from instseg_deploy.bench.models import flops_model, peak_compute, precision_label
from instseg_deploy.bench.rows import RowSpec, image_paths, measure_rows
from instseg_deploy.bench.seeded import standardize_batch_norms
from instseg_deploy.errors import InstsegError
from instseg_deploy.image_io import read_image
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess
from instseg_deploy.runtime.factory import BACKENDS


@dataclass(frozen=True, kw_only=True)
class BenchRequest:
    """What to measure. ``models``: exported .onnx (ort and openvino rows), OpenVINO IR .xml (openvino
    rows) and .engine (trt rows) files; without an .onnx the ort and openvino rows time a fresh export
    of ``weights``. ``precisions``: the openvino rows' inference precisions (f32, bf16, auto), one row
    each; an INT8 file runs once, as the file says. ``images``: a folder (default: 8 generated
    images); ``size``: resize them to exactly this HxW so the network sees it. One row per backend/model,
    batch size and thread count; ``iters`` timed iterations per row and round, ``rounds`` round-robin
    over the rows, split among ``processes`` successive processes per row (see bench.rows)."""

    backends: tuple[str, ...]
    config: Path | None = None
    weights: Path | None = None
    models: tuple[Path, ...] = ()
    images: Path | None = None
    size: tuple[int, int] | None = None
    batches: tuple[int, ...] = (1,)
    thread_counts: tuple[int, ...] = (1,)
    warmup: int = 2
    iters: int = 10
    device: str = "cpu"
    rounds: int = 1
    processes: int = 1
    precisions: tuple[str, ...] = ("f32",)
    mask_format: str = "rle"

    def check(self) -> None:
        """One clear error for a request that cannot run, before anything is loaded."""
        unknown = set(self.backends) - set(BACKENDS)
        if unknown:
            raise InstsegError(f"unknown backend(s) {sorted(unknown)} (choose from {', '.join(BACKENDS)})")
        if "triton" in self.backends:  # a server is measured by client concurrency, not in rows (bench.serving)
            raise InstsegError("--backend triton is benchmarked alone: instseg bench --backend triton --url HOST:PORT")
        if "torch" in self.backends and self.weights is None:
            raise InstsegError("--backend torch needs --weights (and --config for detectron2 checkpoints)")
        if "trt" in self.backends and not any(m.suffix == ".engine" for m in self.models):
            raise InstsegError("--backend trt needs --model model.engine (from `instseg export --to trt`)")
        from instseg_deploy.runtime.openvino import PRECISIONS

        bad = [p for p in self.precisions if p not in PRECISIONS]
        if "openvino" in self.backends and (bad or not self.precisions):
            raise InstsegError(f"--precision takes {', '.join(PRECISIONS)} (comma-separated), got {bad or 'nothing'}")
        for m in self.models:
            if not m.is_file():
                raise InstsegError(f"model file not found: {m}")
        if "trt" in self.backends:  # here, as `export --to trt` does: not in a row after the export and peaks
            from instseg_deploy.runtime.trt.util import import_tensorrt

            import_tensorrt()
        if self.device.startswith("cuda"):  # else the GPU peak measurement fails first, with a traceback
            from instseg_deploy.runtime.torch_runner import torch_device

            torch_device(self.device)


def run_bench(request: BenchRequest, on_message: Callable[[str], None] | None = None) -> dict:
    """Measure every row of ``request``; returns the result dict bench.report writes. ``on_message``
    hears what the run is doing (exporting, measuring the peak, which row and round)."""
    say = on_message or (lambda _: None)
    request.check()
    hw = request.size
    with tempfile.TemporaryDirectory(prefix="instseg-bench-") as tmp:
        tmp = Path(tmp)
        folder = request.images or generated_images(tmp / "synth")
        paths = list(image_paths(folder))
        if max(request.batches) > len(paths):  # rows would run fewer images than they count
            raise InstsegError(f"--batch {max(request.batches)} needs at least that many images; "
                               f"{folder} has {len(paths)}")
        if hw:
            paths = resized_copies(paths, tmp / "resized", *hw)
        onnx_models = [m for m in request.models if m.suffix == ".onnx"]
        if {"ort", "openvino"} & set(request.backends) and not onnx_models and not _ir_models(request):
            onnx_models = [_export_for_ort(request, tmp / "model.onnx", say)]
        net = flops_model(request.config, request.weights, onnx_models or list(request.models))
        counted = preprocess([read_image(paths[0])[0]], _params_for(net, hw))
        if request.weights is None:  # torch has the architecture, not the file's weights: a trained model's ROI work
            standardize_batch_norms(net, counted)
        gflops = count_gflops(net, counted)
        specs = _row_specs(request, tuple(paths), onnx_models)
        peaks, peak_source = _peaks(request, say)
        by_compute, sources, kernels = _compute_peaks(request, specs, peaks, peak_source, say)
        # A small sgemm after every round tracks the machine's own speed through the run (a shared
        # VM's moves by tens of percent within minutes), so two runs' tables can be told apart from it.
        machine_gflops: list[float] = []
        probe = None if request.device.startswith("cuda") else (
            lambda: machine_gflops.append(measure_peak_gflops(max(request.thread_counts), size=1024, repeats=3)))
        rows = measure_rows(specs, request.rounds, progress=say, after_round=probe, processes=request.processes)
    for spec, row in zip(specs, rows):
        row["gflops_per_image"] = gflops.at(row["detections_per_image"])  # the mask head ran on its detections
        row["achieved_gflops_per_s"] = row["gflops_per_image"] * row["model_images_per_s"]
        set_row_peak(row, _row_compute(request, spec), by_compute)
    return {
        "input": input_label(rows),
        # The f32 (CPU sgemm or GPU GEMM) peak, as before peaks by compute type existed.
        "peak_gflops_per_s": max(peaks.values()), "peak_threads": max(peaks, key=peaks.get),
        "peak_source": peak_source,
        "peaks_by_threads": peaks,
        # {compute type: {threads: GFLOP/s or None}}; "f32_openvino" is OpenVINO's own f32 GEMM beside the
        # sgemm, for reference (the bf16 and int8 peaks are OpenVINO's), never a row's peak.
        "peaks_by_compute": by_compute, "peak_sources_by_compute": sources, "openvino_gemm_kernels": kernels,
        "machine_gflops_by_round": machine_gflops, "machine": machine_info(request.device),
        "rows": rows,
    }


def _export_for_ort(request: BenchRequest, out: Path, say: Callable[[str], None]) -> Path:
    if request.weights is None:
        raise InstsegError("--backend ort needs --model model.onnx, or --weights to export one")
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    say("exporting the model to ONNX for the ort rows")
    net, cfg = load_model(request.config, request.weights)
    return export_onnx(net, cfg, out).path


def _row_specs(request: BenchRequest, images: tuple[str, ...], onnx_models: list[Path]) -> list[RowSpec]:
    """Rows in table order: for every batch and thread count, torch, then each ort model, then each engine."""
    hw = request.size
    # (backend, label, keyword arguments) of every row of one batch size and thread count, in table order;
    # the model files are read once here, not once per batch and thread count.
    rows: list[tuple[str, str, dict]] = []
    if "torch" in request.backends:
        rows.append(("torch", "torch fp32", {"config": _s(request.config), "weights": _s(request.weights)}))
    if "ort" in request.backends:
        rows += [("ort", f"ort {precision_label(m)}", {"model": str(m)}) for m in onnx_models]
    if "openvino" in request.backends:
        rows += [("openvino", label, {"model": str(m), "precision": precision})
                 for m in onnx_models + _ir_models(request) for label, precision in _openvino_rows(request, m)]
    if "trt" in request.backends:
        rows += [("trt", "trt", {"model": str(m)}) for m in request.models if m.suffix == ".engine"]
    return [RowSpec(backend, label, batch=b, threads=t, images=images, warmup=request.warmup, iters=request.iters,
                    min_size=min(hw) if hw else None, max_size=max(hw) if hw else None, device=request.device,
                    mask_format=request.mask_format, **kwargs)
            for b in request.batches for t in request.thread_counts for backend, label, kwargs in rows]


def _ir_models(request: BenchRequest) -> list[Path]:
    return [m for m in request.models if m.suffix.lower() == ".xml"]


def _openvino_rows(request: BenchRequest, model: Path) -> list[tuple[str, str]]:
    """(label, precision to compile with) per openvino row of ``model``: the precision that will really
    run (auto and an unsupported bf16 resolved here, so the label and its peak are right)."""
    from instseg_deploy.cpu_isa import cpu_isa
    from instseg_deploy.runtime.openvino import cpu_capabilities, resolve_precision, shared_core

    file_precision = precision_label(model)
    if file_precision not in ("fp32", "f32"):
        return [(f"openvino {file_precision}", "f32")]  # e.g. an INT8 QDQ file: its own precisions
    capabilities, isa = cpu_capabilities(shared_core()), cpu_isa()
    resolved = dict.fromkeys(resolve_precision(p, capabilities, isa) for p in request.precisions)
    return [(f"openvino {p}", p) for p in resolved]


def _peaks(request: BenchRequest, say: Callable[[str], None]) -> tuple[dict[int, float], str]:
    """({threads: peak GFLOP/s}, what was measured): the limit each row's achieved GFLOP/s is set against."""
    if request.device.startswith("cuda"):  # GPU rows run against the GPU's limit, whatever the CPU threads
        say(f"measuring the GEMM peak of {request.device}")
        gpu_peak, source = measure_gpu_peak_gflops(request.device)
        return dict.fromkeys(request.thread_counts, gpu_peak), source
    peaks = {}
    for t in request.thread_counts:
        say(f"measuring the sgemm peak with {t} thread(s)")
        peaks[t] = measure_peak_gflops(t)
    return peaks, f"float32 sgemm, {max(peaks, key=peaks.get)} threads"


def set_row_peak(row: dict, compute: str, by_compute: dict[str, dict[int, float | None]]) -> None:
    """Set ``row``'s peak (its compute type's at its thread count) and its achieved GFLOP/s as a % of it;
    the % is None where that peak could not be measured (no openvino), rather than one against f32."""
    peak = by_compute[compute][row["threads"]]
    row.update(peak_compute=compute, peak_gflops_per_s=peak,
               percent_of_peak=None if peak is None else 100 * row["achieved_gflops_per_s"] / peak)


def _row_compute(request: BenchRequest, spec: RowSpec) -> str:
    """The peak a row is set against: on a GPU the GPU's one measured peak, on the CPU its precision's."""
    return "f32" if request.device.startswith("cuda") else peak_compute(spec.label)


def _compute_peaks(request: BenchRequest, specs: list[RowSpec], f32: dict[int, float], f32_source: str,
                   say: Callable[[str], None]) -> tuple[dict[str, dict[int, float | None]], dict[str, str], dict]:
    """Peaks for every compute type the rows use beyond f32 (bf16, int8: the faster of an OpenVINO GEMM and
    convolution at each thread count), plus OpenVINO's f32 beside them for reference: ({compute: {threads:
    GFLOP/s or None}}, {compute: what was measured or why not}, {compute: the kernel OpenVINO ran})."""
    by_compute: dict[str, dict[int, float | None]] = {"f32": dict(f32)}
    sources, kernels = {"f32": f32_source}, {}
    used = sorted({_row_compute(request, s) for s in specs} - {"f32"})
    wanted = used + (["f32_openvino"] if used or any(s.backend == "openvino" for s in specs) else [])
    for compute in wanted:
        measured: dict[int, GemmPeak] = {}
        for t in request.thread_counts:
            say(f"measuring the {compute.replace('_', ' ')} peak (GEMM and convolution) with {t} thread(s)")
            measured[t] = measure_openvino_peak(compute.removesuffix("_openvino"), t)
        by_compute[compute] = {t: m.gflops for t, m in measured.items()}
        top = measured[max(measured)]
        sources[compute] = top.source
        if top.kernel:
            kernels[compute] = top.kernel
    return by_compute, sources, kernels


def input_label(rows: list[dict]) -> str:
    """The padded input size(s) the rows ran, e.g. "800x1344 padded" or "320x416 to 384x512 padded"."""
    sizes = sorted({tuple(hw) for row in rows for hw in row["input_hws"]}, key=lambda hw: hw[0] * hw[1])
    if not sizes:
        return ""
    label = "x".join(map(str, sizes[0]))
    if len(sizes) > 1:
        label += " to " + "x".join(map(str, sizes[-1]))
    return label + " padded"


def _s(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _params_for(model: MaskRCNN, hw: tuple[int, int] | None) -> PreprocessParams:
    params = PreprocessParams.from_model_config(model.cfg)
    return dataclasses.replace(params, min_size=min(hw), max_size=max(hw)) if hw else params
