"""`instseg bench`: latency / throughput tables across backends, against the machine's compute peak."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from instseg_deploy.cli.common import ConfigOption, WeightsOption, console, user_errors
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg bench --backend torch,ort --config config.yaml --weights model_final.pth --size 800x1333

  instseg bench --backend ort --model model.onnx --model model.int8.onnx --batch 1,2 --threads 1,2 --json b.json

  instseg bench --backend trt --model model.engine --images val2017/ --device cuda --markdown b.md --plot b.png
"""


def _ints(text: str, what: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InstsegError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < minimum for v in values):
        raise InstsegError(f"{what} values must be >= {minimum}, got {text!r}")
    return values


def _size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InstsegError(f"--size must be HxW like 800x1333, got {text!r}") from None
    if h < 32 or w < 32:
        raise InstsegError(f"--size {text} is too small")
    return h, w


def _precision_label(model: Path) -> str:
    from instseg_deploy.backends.ort_backend import read_onnx_metadata
    from instseg_deploy.export.metadata import parse_metadata

    props, _ = read_onnx_metadata(model)
    meta = parse_metadata(props, str(model)) if "instseg" in props else {}
    return meta.get("precision", "fp32")


def _flops_model(config, weights, models):
    """The torch model whose conv/matmul FLOPs stand for every backend (same graph)."""
    from instseg_deploy.model_files import load_model

    if weights is not None:
        return load_model(config, weights)[0]
    import json

    from instseg_deploy.backends.ort_backend import read_onnx_metadata
    from instseg_deploy.config.loader import config_from_tree
    from instseg_deploy.modeling import build_model
    import yaml

    props, _ = read_onnx_metadata(models[0])
    tree = yaml.safe_load(json.loads(props["instseg"])["config"]) if "instseg" in props else None
    if tree is None:
        raise InstsegError("FLOPs need the model's architecture: pass --config/--weights or an instseg-exported model")
    return build_model(config_from_tree(tree).model)


@user_errors
def bench(
    backend: str = typer.Option("torch,ort", "--backend", "-b", help="Comma-separated: torch, ort, trt."),
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    model: list[Path] = typer.Option([], "--model", "-m", help="Exported model(s) for ort/trt; repeat for several "
                                     "(e.g. FP32 and INT8). Without it, ort uses a fresh export of --weights."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images (default: 8 generated images).",
                                          show_default=False),
    size: Optional[str] = typer.Option(None, "--size", help="Network input HxW, e.g. 800x1333: images are resized so "
                                       "the model sees this size.", show_default=False),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,2,4 (throughput mode for > 1)."),
    threads: str = typer.Option("0", "--threads", help="CPU thread counts to sweep, e.g. 1,2 (0 = all cores)."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed iterations first."),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed iterations per row and round."),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Measure every row this many times, round-robin; a "
                               "row's process is loaded and warmed up once and kept between rounds (see "
                               "--processes); the statistics pool all rounds. Spreads each row over the whole run, so slow phases of a shared "
                               "machine hit all rows alike (e.g. --rounds 64 --iters 1 --processes 4)."),
    processes: int = typer.Option(1, "--processes", min=1, help="Split the rounds among this many successive "
                                  "processes per row (each loaded and warmed up anew): a process's speed is a "
                                  "draw of its own, which several processes average out."),
    device: str = typer.Option("cpu", "--device", help="torch device (cuda for GPU timings of torch/trt)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write rows as JSON.", show_default=False),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write rows as a Markdown table.",
                                                 show_default=False),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG chart.", show_default=False),
) -> None:
    """Measure end-to-end and model-only latency (mean/p50/p90/p99), images/s, startup, peak memory and the
    share of the machine's measured GFLOP/s each backend reaches."""
    import os

    backends = [b.strip() for b in backend.split(",") if b.strip()]
    result = run_bench(backends, config, weights, list(model), images, _size(size), _ints(batch, "--batch"),
                       [t or os.cpu_count() or 1 for t in _ints(threads, "--threads", minimum=0)], warmup, iters, device,
                       rounds, processes)
    from instseg_deploy.bench.report import rich_table, write_outputs

    Console(width=max(Console().width, 150)).print(rich_table(result))
    write_outputs(result, json_path, markdown_path, plot_path)


def run_bench(backends: list[str], config: Optional[Path], weights: Optional[Path], model: list[Path],
              images: Optional[Path], hw: Optional[tuple[int, int]], batches: list[int], thread_counts: list[int],
              warmup: int, iters: int, device: str = "cpu", rounds: int = 1, processes: int = 1) -> dict:
    """Measure every (backend/model, batch, threads) row; returns the result dict the reports take."""
    from instseg_deploy.bench.flops import count_gflops, measure_gpu_peak_gflops, measure_peak_gflops
    from instseg_deploy.bench.inputs import generated_images, resized_copies
    from instseg_deploy.bench.rows import RowSpec, image_paths, measure_rows
    from instseg_deploy.image_io import read_image
    from instseg_deploy.processing.preprocess import preprocess

    unknown = set(backends) - {"torch", "ort", "trt"}
    if unknown:
        raise InstsegError(f"unknown backend(s) {sorted(unknown)} (choose from torch, ort, trt)")
    if "torch" in backends and weights is None:
        raise InstsegError("--backend torch needs --weights (and --config for detectron2 checkpoints)")
    if "trt" in backends and not any(m.suffix == ".engine" for m in model):
        raise InstsegError("--backend trt needs --model model.engine (from `instseg export --to trt`)")
    for m in model:
        if not m.is_file():
            raise InstsegError(f"model file not found: {m}")
    with tempfile.TemporaryDirectory(prefix="instseg-bench-") as tmp:
        tmp = Path(tmp)
        paths = list(image_paths(images)) if images else list(image_paths(generated_images(tmp / "synth")))
        if hw:
            paths = resized_copies(paths, tmp / "resized", *hw)
        onnx_models = [m for m in model if m.suffix == ".onnx"]
        if "ort" in backends and not onnx_models:
            if weights is None:
                raise InstsegError("--backend ort needs --model model.onnx, or --weights to export one")
            from instseg_deploy.export.onnx_export import export_onnx
            from instseg_deploy.model_files import load_model

            with console.status("exporting the model to ONNX for the ort rows"):
                net, cfg = load_model(config, weights)
                onnx_models = [export_onnx(net, cfg, tmp / "model.onnx").path]
        flops_model = _flops_model(config, weights, onnx_models or model)
        gflops = count_gflops(flops_model, preprocess([read_image(paths[0])[0]], _params_for(flops_model, hw)))
        specs = []
        for b in batches:
            for t in thread_counts:
                common = dict(batch=b, threads=t, images=tuple(paths), warmup=warmup, iters=iters,
                              min_size=min(hw) if hw else None, max_size=max(hw) if hw else None, device=device)
                if "torch" in backends:
                    specs.append(RowSpec("torch", "torch fp32", config=_s(config), weights=_s(weights), **common))
                if "ort" in backends:
                    specs += [RowSpec("ort", f"ort {_precision_label(m)}", model=str(m), **common) for m in onnx_models]
                if "trt" in backends:
                    specs += [RowSpec("trt", "trt", model=str(m), **common) for m in model if m.suffix == ".engine"]
        peaks = {}
        with console.status("measuring") as status:
            if device.startswith("cuda"):  # GPU rows run against the GPU's limit, whatever the CPU threads
                status.update(f"measuring the GEMM peak of {device}")
                gpu_peak, peak_source = measure_gpu_peak_gflops(device)
                peaks = dict.fromkeys(thread_counts, gpu_peak)
            else:
                for t in thread_counts:
                    status.update(f"measuring the sgemm peak with {t} thread(s)")
                    peaks[t] = measure_peak_gflops(t)
                peak_source = f"float32 sgemm, {max(peaks, key=peaks.get)} threads"
            # A small sgemm after every round tracks the machine's own speed through the run (a shared
            # VM's moves by tens of percent within minutes), so two runs' tables can be told apart from it.
            machine_gflops = []
            probe = None if device.startswith("cuda") else (
                lambda: machine_gflops.append(measure_peak_gflops(max(thread_counts), size=1024, repeats=3)))
            rows = measure_rows(specs, rounds, progress=status.update, after_round=probe, processes=processes)
        for spec, row in zip(specs, rows):
            row["gflops_per_image"] = gflops
            row["achieved_gflops_per_s"] = gflops * row["model_images_per_s"]
            row["percent_of_peak"] = 100 * row["achieved_gflops_per_s"] / peaks[spec.threads]
    return {
        "input": _input_label(rows),
        "peak_gflops_per_s": max(peaks.values()), "peak_threads": max(peaks, key=peaks.get),
        "peak_source": peak_source,
        "peaks_by_threads": peaks, "machine_gflops_by_round": machine_gflops, "machine": _machine(device),
        "rows": rows,
    }


def _input_label(rows: list[dict]) -> str:
    """The padded input size(s) the rows ran, e.g. "800x1344 padded" or "320x416 to 384x512 padded"."""
    sizes = sorted({tuple(hw) for row in rows for hw in row["input_hws"]}, key=lambda hw: hw[0] * hw[1])
    if not sizes:
        return ""
    label = "x".join(map(str, sizes[0]))
    if len(sizes) > 1:
        label += " to " + "x".join(map(str, sizes[-1]))
    return label + " padded"


def _s(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


def _params_for(model, hw):
    import dataclasses

    from instseg_deploy.processing.preprocess import PreprocessParams

    params = PreprocessParams.from_model_config(model.cfg)
    return dataclasses.replace(params, min_size=min(hw), max_size=max(hw)) if hw else params


def _machine(device: str = "cpu") -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    machine = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
               "onnxruntime": onnxruntime.__version__, "platform": platform.platform()}
    if device.startswith("cuda"):
        machine.update(gpu=torch.cuda.get_device_name(torch.device(device)), cuda=torch.version.cuda)
    return machine


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(bench)
