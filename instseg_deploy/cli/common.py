"""Pieces every CLI command shares: one-line errors, progress bars, common options."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from instseg_deploy.errors import InstsegError

console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="detectron2 config YAML (full dump or model-zoo file with _BASE_).",
                            show_default=False)
WeightsOption = typer.Option(None, "--weights", "-w", help="Checkpoint: detectron2 .pkl/.pth or an instseg .pth.",
                             show_default=False)


BackendOption = typer.Option("torch", "--backend", "-b", help="torch (config + weights), ort (exported .onnx) or trt (.engine from export --to trt).")
ModelOption = typer.Option(None, "--model", "-m", help="Exported model: .onnx for ort, .engine for trt.", show_default=False)
ProvidersOption = typer.Option("cpu", "--providers", help="ONNX Runtime providers in priority order: cpu, cuda, trt.")
ThreadsOption = typer.Option(0, "--threads", help="Intra-op threads for ONNX Runtime (0 = its default).")


def providers_list(providers: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in providers.split(",") if p.strip())


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(func):
    """Turn expected failures (bad files, bad configs) into one line and exit code 2, no traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InstsegError as e:
            fail(str(e))
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130)
    return wrapper


def progress_bar(unit: str = "img") -> Progress:
    """A progress bar with count, rate, elapsed time and ETA, on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def rate_text(done: int, elapsed: float, unit: str = "img") -> str:
    return f"{done / elapsed:.2f} {unit}/s" if elapsed > 0 and done else ""


def existing_file(path: Optional[Path], what: str) -> Optional[Path]:
    if path is not None and not path.is_file():
        raise InstsegError(f"{what} not found: {path}")
    return path
