"""`instseg predict`: overlays and COCO-format results for images or folders of images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import cv2
import typer
from rich.markup import escape

from instseg_deploy.cli.common import (
    BackendOption,
    ConfigOption,
    HintOption,
    ModelOption,
    PrecisionOption,
    ProvidersOption,
    ThreadsOption,
    WeightsOption,
    check_mask_format_option,
    console,
    mask_format_option,
    overlap_option,
    progress_bar,
    providers_list,
    rate_text,
    user_errors,
)
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg predict photo.jpg --config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \\
      --weights model_final_f10217.pkl --out predictions/

  instseg predict images/ more.png -c output/config.yaml -w output/model_final.pth --out pred --score-thresh 0.3

  instseg predict images/ --backend ort --model model.onnx --out pred_ort

  instseg predict images/ --backend openvino --model model.xml --precision bf16 --out pred_ov
"""


def _unique_stems(paths: list[Path]) -> list[str]:
    """Output names per input; inputs with the same stem from different folders get a suffix."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}_{n}")
    return stems


@user_errors
def predict(
    inputs: list[str] = typer.Argument(..., metavar="INPUTS... [KEY VALUE]...", show_default=False,
                                       help="Image files and/or folders of images, then optional detectron2-style "
                                       "config overrides (e.g. MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3)."),
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    backend: str = BackendOption,
    model: Optional[Path] = ModelOption,
    providers: str = ProvidersOption,
    threads: int = ThreadsOption,
    precision: str = PrecisionOption,
    hint: str = HintOption,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for overlays and results.json.",
                             show_default=False),
    score_thresh: float = typer.Option(0.5, "--score-thresh", help="Keep detections scoring at least this."),
    class_names: Optional[str] = typer.Option(None, "--class-names",
                                              help="Comma-separated names or a file with one per line."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    mask_format: str = mask_format_option("rle", "Masks in results.json and the overlays: rle (made from each "
                                          "box region alone), dense (through full-image masks, the reference "
                                          "path; same output) or none (boxes only)."),
    overlap: bool = overlap_option(),
) -> None:
    """Run the model on images; write one overlay PNG per image and a COCO results JSON."""
    from instseg_deploy.atomic import output_set
    from instseg_deploy.class_names import parse_class_names
    from instseg_deploy.coco_format import instances_to_coco
    from instseg_deploy.image_io import list_images, read_image
    from instseg_deploy.runtime.factory import load_predictor
    from instseg_deploy.runtime.pipeline import predict_stream
    from instseg_deploy.visualize import draw_instances

    if not 0.0 <= score_thresh <= 1.0:
        raise InstsegError(f"--score-thresh must be in [0, 1], got {score_thresh}")
    if check_mask_format_option(mask_format) == "cropped":
        raise InstsegError("--mask-format cropped is for the Python API; results.json holds RLE (use rle)")
    from instseg_deploy.config.overrides import split_overrides

    words, overrides = split_overrides(inputs)
    if not words:
        raise InstsegError("no images given (only config overrides)")
    paths = list_images(words)
    # "rle": paste each box region once, then both the RLE and the overlay come from that region.
    predictor = load_predictor(backend, config=config, weights=weights, model=model, score_thresh=score_thresh,
                               device=device, providers=providers_list(providers), threads=threads,
                               precision=precision, hint=hint, overrides=overrides,
                               mask_format="cropped" if mask_format == "rle" else mask_format)
    if class_names:
        predictor.class_names = parse_class_names(class_names, len(predictor.class_names))
    results, failures = [], []
    start = time.perf_counter()

    def read(path: Path):
        image, note = read_image(path)
        if note:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        return image

    # One output set: the overlays and results.json of this run, its manifest written last.
    with output_set(out) as files, progress_bar() as progress:
        task = progress.add_task("predict", total=len(paths), rate="")
        stream = predict_stream(predictor, paths, read, overlap=overlap)
        for image_id, (prediction, stem) in enumerate(zip(stream, _unique_stems(paths)), start=1):
            path, image, instances = prediction.item, prediction.image, prediction.instances
            if prediction.error is not None:  # this input alone: named, skipped, and the exit code says so
                reason = str(prediction.error)
                failures.append(reason if str(path) in reason else f"{path}: {reason}")
                console.print(f"[red]skipped:[/] {escape(failures[-1])}", highlight=False)
                progress.advance(task)
                continue
            ok, png = cv2.imencode(".png", draw_instances(image, instances, predictor.class_names))
            files.write_bytes(f"{stem}.png", png.tobytes())
            for entry in instances_to_coco(instances, image_id):
                entry["file_name"] = path.name
                results.append(entry)
            progress.update(task, advance=1, rate=rate_text(image_id, time.perf_counter() - start))
        if len(failures) == len(paths):  # nothing to show: no output set at all
            raise InstsegError(_unread(failures, paths))
        files.write_json("results.json", results)
    done = len(paths) - len(failures)
    console.print(f"{done} image(s), {len(results)} instance(s) -> {escape(str(out))}/ (overlays *.png, "
                  "results.json)", highlight=False)
    if failures:
        raise InstsegError(_unread(failures, paths))


def _unread(failures: list[str], paths: list[Path]) -> str:
    return f"{len(failures)} of {len(paths)} image(s) could not be read; first: {failures[0]}"


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(predict)
