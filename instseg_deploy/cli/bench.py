"""`instseg bench`: latency / throughput tables across backends, against the machine's compute peak."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from instseg_deploy.cli.common import (
    ConfigOption,
    ModelNameOption,
    ProtocolOption,
    UrlOption,
    WeightsOption,
    check_mask_format_option,
    console,
    mask_format_option,
    user_errors,
)
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg bench --backend torch,ort --config config.yaml --weights model_final.pth --size 800x1333

  instseg bench --backend ort --model model.onnx --model model.int8.onnx --batch 1,2 --threads 1,2 --json b.json

  instseg bench --backend ort,openvino --model model.onnx --model model.int8.onnx --precision f32,bf16 --threads 2

  instseg bench --backend trt --model model.engine --images val2017/ --device cuda --markdown b.md --plot b.png

  instseg bench --backend triton --url 127.0.0.1:8000 --model model.onnx --concurrency 1,4,16 --requests 50
"""

MIN_SIDE = 32  # --size below one cell of the backbone's coarsest (stride-32) level is no benchmark


def _ints(text: str, what: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InstsegError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < minimum for v in values):
        raise InstsegError(f"{what} values must be >= {minimum}, got {text!r}")
    return values


@user_errors
def bench(
    backend: str = typer.Option("torch,ort", "--backend", "-b", help="Comma-separated: torch, ort, openvino, trt; "
                                "or triton alone (a running server, --url)."),
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    model: list[Path] = typer.Option([], "--model", "-m", help="Exported model(s): .onnx for ort and openvino, .xml "
                                     "(IR) for openvino, .engine for trt; repeat for several (e.g. FP32 and INT8). "
                                     "Without it, ort and openvino use a fresh export of --weights."),
    precision: str = typer.Option("f32", "--precision", help="openvino rows: comma-separated inference precisions, "
                                  "e.g. f32,bf16; INT8 files run as quantized."),
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
                               "--processes); the statistics pool all rounds. Spreads each row over the whole run, "
                               "so slow phases of a shared machine hit all rows alike (e.g. --rounds 64 --iters 1 "
                               "--processes 4)."),
    processes: int = typer.Option(1, "--processes", min=1, help="Split the rounds among this many successive "
                                  "processes per row (each loaded and warmed up anew): a process's speed is a "
                                  "draw of its own, which several processes average out."),
    device: str = typer.Option("cpu", "--device", help="torch device (cuda for GPU timings of torch/trt)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write rows as JSON.", show_default=False),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write rows as a Markdown table.",
                                                 show_default=False),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG chart.", show_default=False),
    mask_format: str = mask_format_option("rle", "How rows make masks (timed in post p50): rle, cropped, dense "
                                          "(full-image masks) or none."),
    url: Optional[str] = UrlOption,
    protocol: str = ProtocolOption,
    model_name: str = ModelNameOption,
    concurrency: str = typer.Option("1,4,16", "--concurrency", help="--backend triton: concurrent clients per "
                                    "level, e.g. 1,4,16."),
    requests: int = typer.Option(50, "--requests", min=1, help="--backend triton: requests per client and level."),
) -> None:
    """Measure end-to-end and model-only latency (mean/p50/p90/p99), images/s, startup, peak memory and the
    share of the machine's measured GFLOP/s each backend reaches."""
    from instseg_deploy.bench.report import rich_table, write_outputs
    from instseg_deploy.bench.run import BenchRequest, run_bench
    from instseg_deploy.processing.sizes import parse_hw

    if backend.strip() == "triton":
        _bench_server(url, protocol, model_name, _ints(concurrency, "--concurrency"), requests, images, model,
                      threads, json_path, markdown_path)
        return
    request = BenchRequest(
        backends=tuple(b.strip() for b in backend.split(",") if b.strip()), config=config, weights=weights,
        models=tuple(model), images=images, size=parse_hw(size, "--size", minimum=MIN_SIDE) if size else None,
        batches=_ints(batch, "--batch"),
        thread_counts=tuple(t or os.cpu_count() or 1 for t in _ints(threads, "--threads", minimum=0)),
        warmup=warmup, iters=iters, device=device, rounds=rounds, processes=processes,
        precisions=tuple(p.strip() for p in precision.split(",") if p.strip()),
        mask_format=check_mask_format_option(mask_format))
    with console.status("measuring") as status:
        result = run_bench(request, on_message=status.update)
    Console(width=max(Console().width, 150)).print(rich_table(result))
    write_outputs(result, json_path, markdown_path, plot_path)


def _bench_server(url, protocol, model_name, concurrencies, requests, images, models, threads, json_path,
                  markdown_path) -> None:
    """--backend triton: latency and throughput of a running server per client concurrency, beside the
    same model in this process (--model) on the same images."""
    import json

    from instseg_deploy.bench.serving import ServerBenchRequest, markdown_table, run_server_bench

    if url is None:
        raise InstsegError("--backend triton needs --url HOST:PORT of the server")
    if len(models) > 1:
        raise InstsegError("--backend triton compares with one in-process --model (the file the server serves)")
    thread_count = _ints(threads, "--threads", minimum=0)[0]
    request = ServerBenchRequest(url=url, protocol=protocol, model_name=model_name, concurrencies=concurrencies,
                                 requests=requests, images=images, compare_model=models[0] if models else None,
                                 threads=thread_count)
    with console.status("measuring") as status:
        result = run_server_bench(request, on_message=status.update)
    table = markdown_table(([result.in_process] if result.in_process else []) + result.levels)
    typer.echo(table)
    if result.overhead() is not None:
        typer.echo(f"serving overhead at 1 client: {100 * result.overhead():+.1f}% p50 latency over in-process")
    if json_path:
        json_path.write_text(json.dumps({"rows": result.rows(), "overhead": result.overhead()}, indent=2) + "\n")
    if markdown_path:
        markdown_path.write_text(table)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(bench)
