"""Pieces every CLI command shares: one-line errors, progress bars, common options."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperCommand, TyperGroup

from instseg_deploy.errors import InstsegError

console = Console(stderr=True)


def configure_logging() -> None:
    """Library warnings (``logging``: TensorRT's log, cache notes) on the same stderr console, once."""
    from rich.logging import RichHandler

    root = logging.getLogger("instseg_deploy")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=console, show_time=False, show_path=False, markup=False))
        root.setLevel(logging.WARNING)


class _PlainFlags:
    """Flags (``--x``, ``--x/--no-x``, ``--help``) listed without a type tag: typer 0.2x prints ``<bool>``
    beside each, as if it took a value."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # typer shows a metavar, when set, in place of the type
        return params


class PlainFlagsCommand(_PlainFlags, TyperCommand):
    pass


class PlainFlagsGroup(_PlainFlags, TyperGroup):
    pass


def use_plain_flags(app: typer.Typer) -> None:
    """Every command and group of ``app`` (sub-apps too) shows its flags as plain flags."""
    app.info.cls = PlainFlagsGroup
    for command in app.registered_commands:
        command.cls = PlainFlagsCommand
    for group in app.registered_groups:
        use_plain_flags(group.typer_instance)


ConfigOption = typer.Option(None, "--config", "-c", "--config-file", show_default=False,
                            help="detectron2 config YAML (full dump or model-zoo file with _BASE_).")
WeightsOption = typer.Option(None, "--weights", "-w", help="Checkpoint: detectron2 .pkl/.pth or an instseg .pth.",
                             show_default=False)


BackendOption = typer.Option("torch", "--backend", "-b", help="torch (config + weights), ort (exported .onnx), "
                             "openvino (.onnx or OpenVINO IR .xml), trt (.engine from export --to trt) or triton "
                             "(a running Triton server: --url).")
# --backend triton: the server to ask (instseg serve, or production Triton with an `export --to triton` repository)
UrlOption = typer.Option(None, "--url", help="--backend triton: HOST:PORT of the server (its HTTP port, or gRPC with "
                         "--protocol grpc).", show_default=False)
ProtocolOption = typer.Option("http", "--protocol", help="--backend triton: http or grpc.")
ModelNameOption = typer.Option("instseg", "--model-name", help="--backend triton: the served model's name.")
ModelOption = typer.Option(None, "--model", "-m", help="Exported model: .onnx for ort, .onnx or .xml for openvino, "
                           ".engine for trt.", show_default=False)
ProvidersOption = typer.Option("cpu", "--providers", help="ONNX Runtime providers in priority order: cpu, cuda, trt.")
ThreadsOption = typer.Option(0, "--threads", help="Intra-op CPU threads of the backend (0: torch uses the cores other "
                             "work leaves idle; ONNX Runtime and OpenVINO their own default).")
PrecisionOption = typer.Option("auto", "--precision", help="--backend openvino: f32, bf16 (CPUs with AVX512-BF16 or "
                               "AMX; box geometry kept f32) or auto (the fastest measured to keep the model's AP: "
                               "bf16 on AVX512-BF16 CPUs without AMX, f32 elsewhere).")
HintOption = typer.Option("latency", "--hint", help="--backend openvino: latency (one image at a time) or "
                          "throughput (several streams).")


def mask_format_option(default: str, help: str):
    """--mask-format: how masks are made (structures.MASK_FORMATS); every format gives the same pixels."""
    return typer.Option(default, "--mask-format", help=help)


# detectron2's trailing KEY VALUE config overrides (train_net.py's opts, demo.py's --opts).
OVERRIDES_HELP = ("detectron2-style config overrides after the options, e.g. MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3 "
                  "MODEL.WEIGHTS model_final.pth (applied after _BASE_ merging; --opts before them is accepted).")


def overrides_argument():
    return typer.Argument(None, metavar="[KEY VALUE]...", help=OVERRIDES_HELP, show_default=False)


def config_overrides(words: Optional[list[str]]) -> list[str]:
    """The KEY VALUE list of a command that takes no other positional words."""
    from instseg_deploy.config.overrides import split_overrides

    extra, overrides = split_overrides(list(words or []))
    if extra:
        raise InstsegError(f"unexpected argument {extra[0]!r}: config overrides are KEY VALUE pairs "
                           "such as MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3")
    return overrides


def overlap_option():
    return typer.Option(True, "--overlap/--no-overlap", help="Read and preprocess the next image and postprocess "
                        "the previous one while the model runs (results keep their order).")


def check_mask_format_option(mask_format: str) -> str:
    from instseg_deploy.structures import MASK_FORMATS

    if mask_format not in MASK_FORMATS:
        raise InstsegError(f"--mask-format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
    return mask_format


# A dataset is --images with --annotations, or --coco-root; data.coco.dataset_paths makes the choice.
def images_option(help: str = "Folder with the dataset's images."):
    return typer.Option(None, "--images", help=help, show_default=False)


def annotations_option(help: str = "COCO instances JSON (ground truth)."):
    return typer.Option(None, "--annotations", help=help, show_default=False)


def coco_root_option(help: str = "COCO 2017 layout: val2017/ + annotations/."):
    return typer.Option(None, "--coco-root", help=f"{help} Default, without --images/--annotations: "
                        "$DETECTRON2_DATASETS/coco when that is set (where detectron2 finds COCO).",
                        show_default=False)


def providers_list(providers: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in providers.split(",") if p.strip())


def _plain(text: str) -> str:
    """``text`` with control characters other than newline and tab spelled out (\\x1b...): a file name
    must not drive the terminal."""
    return "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit non-zero. The message is plain text, never Rich markup: paths
    and user input may hold brackets such as ``[/]``."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "bold red"), " ", _plain(message)), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt, so the same cleanup runs."""

    exit_code = 128 + 15


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def user_errors(func):
    """Turn expected failures (bad files, bad configs) into one line and exit code 2, no traceback.

    While the command runs, SIGTERM (kill, timeout, torchrun stopping its workers) unwinds like Ctrl-C:
    temporary files go, DataLoader workers are shut down, and it exits 128 + 15 (SIGINT: 128 + 2) after
    one line. Set here rather than at start-up: before the command runs there is nothing to clean up, and
    Typer would turn the interruption into its own exit code 130.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import signal
        import threading

        # Only over the default action (not SIG_IGN, nor a handler of a program that calls us), and only in
        # the main thread, the one where handlers can be set.
        catch = threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if catch:
            signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return func(*args, **kwargs)
        except InstsegError as e:
            fail(str(e))
        except KeyboardInterrupt as e:
            console.print("interrupted", markup=False)
            raise typer.Exit(getattr(e, "exit_code", 128 + 2)) from None
        finally:
            if catch:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
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


@contextlib.contextmanager
def image_progress(label: str, total: int):
    """A progress bar over ``total`` images; yields the per-image callback that advances it."""
    start = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(label, total=total, rate="")

        def on_image() -> None:
            done = progress.tasks[task].completed + 1
            progress.update(task, advance=1, rate=rate_text(int(done), time.perf_counter() - start))

        yield on_image


def rate_text(done: int, elapsed: float, unit: str = "img") -> str:
    return f"{done / elapsed:.2f} {unit}/s" if elapsed > 0 and done else ""


def existing_file(path: Optional[Path], what: str) -> Optional[Path]:
    if path is not None and not path.is_file():
        raise InstsegError(f"{what} not found: {path}")
    return path
