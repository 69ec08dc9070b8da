"""`instseg quantize`: INT8 (calibrated QDQ) or FP16 copies of an exported ONNX model, and a
per-stage INT8 sensitivity report."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from instseg_deploy.cli.common import console, progress_bar, rate_text, user_errors
from instseg_deploy.errors import InstsegError
from instseg_deploy.quantize.stages import QUANTIZED_OP_TYPES

EXAMPLES = """
Examples:

  instseg quantize --model model.onnx --calib --images calib_images/ --out model.int8.onnx

  instseg quantize --model model.onnx --calib --coco-root datasets/coco --num-images 256 --method entropy \\
      --exclude 'res2/res2.0/conv1' --out model.int8.onnx

  # for x86 CPUs without VNNI (AVX2 only), whose int8 kernels saturate 8-bit weights:
  instseg quantize --model model.onnx --calib --images calib_images/ --weight-bits 7 --out model.int8.onnx

  instseg quantize --model model.onnx --fp16 --out model.fp16.onnx

  instseg quantize --model model.onnx --analyze --images shapes/val/images --annotations shapes/val/annotations.json

Then evaluate it like any exported model:

  instseg eval --backend ort --model model.int8.onnx --images shapes/val/images \\
      --annotations shapes/val/annotations.json
"""

DEFAULT_NUM_IMAGES = 64
DEFAULT_EVAL_LIMIT = 50


def _cache_path(explicit: Optional[Path], anchor: Path) -> Path:
    """--calib-cache, else ``<anchor stem>.calib.json`` beside ``anchor``."""
    if explicit is not None:
        return explicit
    stem = anchor.name[: -len(".onnx")] if anchor.name.endswith(".onnx") else anchor.name
    return anchor.with_name(f"{stem}.calib.json")


def _report_skip(path: Path, reason: str) -> None:
    console.print(f"[yellow]skipped calibration image[/] {escape(path.name)}: {escape(reason)}", highlight=False,
                  soft_wrap=True)


def _run_int8(*, model: Path, out: Path, images: list[Path], settings, cache: Path) -> None:
    from instseg_deploy.quantize.qdq import quantize_int8

    start = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("calibrate", total=len(images), rate="")

        def on_image(done: int, total: int) -> None:
            progress.update(task, completed=done, rate=rate_text(done, time.perf_counter() - start))

        report = quantize_int8(model, out, images=images, settings=settings, cache_path=cache, on_image=on_image,
                               on_skip=_report_skip)
    calib = report.calibration
    skipped = f", {len(calib.skipped)} skipped" if calib.skipped else ""
    source = f"reused cache {report.cache_path}" if calib.cache_reused else f"cache {report.cache_path}"
    layers = "/".join(QUANTIZED_OP_TYPES)
    Console().print(f"wrote {report.path} ({report.path.stat().st_size / 2**20:.1f} MiB, int8 QDQ, "
                    f"{settings.activations} activations, {settings.weight_bits}-bit weights): "
                    f"{len(report.quantized)} {layers} quantized, "
                    f"{len(report.kept_float)} kept float; calibrated on {calib.images_used} images{skipped} "
                    f"({settings.method}; {source}) in {report.seconds:.0f} s", highlight=False, soft_wrap=True)


def _run_fp16(model: Path, out: Path, exclude: tuple[str, ...]) -> None:
    from instseg_deploy.quantize.fp16 import convert_fp16

    with console.status("converting to fp16"):
        report = convert_fp16(model, out, exclude)
    Console().print(f"wrote {report.path} ({report.path.stat().st_size / 2**20:.1f} MiB, fp16): "
                    f"{report.fp16_nodes} nodes fp16, {report.fp32_nodes} kept fp32", highlight=False)


def _analysis_request(*, model: Path, calibration: list[Path], settings, cache: Path, annotations: Optional[Path],
                      eval_images: Path, eval_limit: int):
    """The sensitivity request of the --analyze options: AP on a COCO set with --annotations, else
    output error against FP32 on the first ``eval_limit`` images of ``eval_images``."""
    from instseg_deploy.image_io import IMAGE_SUFFIXES
    from instseg_deploy.quantize.sensitivity import SensitivityRequest

    common = dict(model=model, calibration=tuple(calibration), settings=settings, cache_path=cache)
    if annotations is not None:
        from dataclasses import replace

        from instseg_deploy.data.coco import load_coco_dataset

        dataset = load_coco_dataset(eval_images, annotations)
        return SensitivityRequest(dataset=replace(dataset, images=dataset.images[:eval_limit]), **common)
    eval_paths = sorted(p for p in eval_images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:eval_limit]
    if not eval_paths:
        raise InstsegError(f"no images to analyse in {eval_images}")
    return SensitivityRequest(eval_images=tuple(eval_paths), **common)


def _run_analysis(request, report_path: Optional[Path]) -> None:
    from instseg_deploy.quantize.sensitivity import analyze

    with progress_bar() as progress:
        calib_task = progress.add_task("calibrate", total=len(request.calibration), rate="")

        def on_calibration(done: int, total: int) -> None:
            progress.update(calib_task, completed=done)

        def on_stage(name: str, count: int):
            task = progress.add_task(f"run {name}", total=count, rate="")
            return lambda: progress.advance(task)

        fp32, results = analyze(request, on_stage=on_stage, on_calibration=on_calibration, on_skip=_report_skip)
    _print_analysis(fp32, results, request.dataset is not None)
    if report_path is not None:
        from instseg_deploy.atomic import write_json

        def clean(m: dict) -> dict:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}

        write_json(report_path, {"fp32": clean(fp32), "stages": [
            {"stage": r.stage, "quantized_nodes": r.quantized_nodes, **clean(r.metrics)} for r in results]})


def _print_analysis(fp32: dict, results: list, with_ap: bool) -> None:
    table = Table(title="INT8 sensitivity: one stage quantized at a time" +
                  (" (COCO AP %)" if with_ap else " (output error vs FP32)"))
    table.add_column("quantized")
    table.add_column("nodes", justify="right")
    names = list(results[0].metrics) if results else []
    for name in names:
        table.add_column(name, justify="right")
        if with_ap:
            table.add_column(f"Δ {name}", justify="right")
    if with_ap:
        table.add_row("none (fp32)", "0", *[c for n in names for c in (f"{fp32[n]:.2f}", "")])
    for r in results:
        cells = []
        for n in names:
            cells.append(f"{r.metrics[n]:.3f}" if not with_ap else f"{r.metrics[n]:.2f}")
            if with_ap:
                cells.append(f"{r.metrics[n] - fp32[n]:+.2f}")
        table.add_row(r.stage, str(r.quantized_nodes), *cells)
    Console().print(table)


@user_errors
def quantize(
    model: Path = typer.Option(..., "--model", "-m", help="FP32 model exported by `instseg export --to onnx`.",
                               show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .onnx (not used by --analyze).",
                                       show_default=False),
    calib: bool = typer.Option(False, "--calib", help="INT8 with calibration on real images (the default mode)."),
    fp16: bool = typer.Option(False, "--fp16", help="Write an FP16 model instead (no calibration)."),
    analyze: bool = typer.Option(False, "--analyze", help="Report the accuracy cost of quantizing each stage "
                                 "(backbone, FPN, RPN head, box head, mask head) alone; writes no model."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of calibration images.", show_default=False),
    coco_root: Optional[Path] = typer.Option(None, "--coco-root", help="Calibrate on COCO 2017's train2017/ "
                                             "(val2017/ when train2017/ is absent). Default, without --images: "
                                             "$DETECTRON2_DATASETS/coco when that is set.", show_default=False),
    num_images: int = typer.Option(DEFAULT_NUM_IMAGES, "--num-images", "-n", min=1,
                                   help="Calibrate on this many images (a fixed random subset)."),
    method: str = typer.Option("minmax", "--method", help="Activation ranges: minmax, entropy or percentile."),
    percentile: float = typer.Option(99.999, "--percentile", help="Percentile for --method percentile."),
    per_channel: bool = typer.Option(True, "--per-channel/--no-per-channel", help="Per-output-channel weight scales."),
    activations: str = typer.Option("int8", "--activations", help="int8: symmetric, TensorRT-compatible; "
                                    "uint8: asymmetric, fastest in ONNX Runtime on x86 CPUs, not for TensorRT."),
    weight_bits: int = typer.Option(8, "--weight-bits", help="8, or 7 for x86 CPUs without VNNI (AVX2, AVX-512 "
                                    "without VNNI), whose int8 kernels can saturate 8-bit weights."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Keep nodes whose name matches this regular "
                                                "expression in float (repeatable).", show_default=False),
    default_exclusions: bool = typer.Option(True, "--default-exclusions/--no-default-exclusions",
                                            help="Keep box/score/mask prediction layers float."),
    calib_cache: Optional[Path] = typer.Option(None, "--calib-cache", help="Calibration cache file (default: "
                                               "<out>.calib.json); reused while model, images and method match.",
                                               show_default=False),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="--analyze: COCO annotations of "
                                               "--eval-images for AP (without: output error vs FP32).",
                                               show_default=False),
    eval_images: Optional[Path] = typer.Option(None, "--eval-images", help="--analyze: images to measure on "
                                               "(default: the calibration folder).", show_default=False),
    eval_limit: int = typer.Option(DEFAULT_EVAL_LIMIT, "--eval-limit", min=1, help="--analyze: at most this many "
                                   "evaluation images."),
    report: Optional[Path] = typer.Option(None, "--report", help="--analyze: also write the table as JSON.",
                                          show_default=False),
) -> None:
    """INT8 post-training quantization (QDQ, TensorRT-compatible) or FP16 conversion of an exported model."""
    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.data.coco import resolve_coco_root
    from instseg_deploy.quantize.qdq import QuantizeSettings

    if sum((calib, fp16, analyze)) > 1:
        raise InstsegError("choose one of --calib (INT8), --fp16 and --analyze")
    if not model.is_file():
        raise InstsegError(f"model file not found: {model}")
    patterns = tuple(exclude or ())
    if fp16:
        if out is None:
            raise InstsegError("--out is required (the FP16 .onnx to write)")
        _run_fp16(model, out, patterns)
        return
    if not analyze and out is None:
        raise InstsegError("--out is required (the INT8 .onnx to write)")
    if out is not None and out.resolve() == model.resolve():
        raise InstsegError("--out must differ from --model")
    settings = QuantizeSettings(method=method, per_channel=per_channel, exclude=patterns,
                                keep_sensitive=default_exclusions, activations=activations, percentile=percentile,
                                weight_bits=weight_bits)
    settings.check()
    # --annotations here belong to --analyze's evaluation, not to the calibration set: only --images
    # keeps $DETECTRON2_DATASETS out
    coco_root = resolve_coco_root(images, None, coco_root)
    paths = calibration_images(images, coco_root, num_images)
    if analyze:
        if eval_images is None:
            if annotations is not None and coco_root is not None:
                from instseg_deploy.data.coco import coco_root_paths

                eval_images = coco_root_paths(coco_root)[0]
            else:
                eval_images = images if images is not None else paths[0].parent
        request = _analysis_request(model=model, calibration=paths, settings=settings,
                                    cache=_cache_path(calib_cache, model), annotations=annotations,
                                    eval_images=eval_images, eval_limit=eval_limit)
        _run_analysis(request, report)
        return
    _run_int8(model=model, out=out, images=paths, settings=settings, cache=_cache_path(calib_cache, out))


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(quantize)
