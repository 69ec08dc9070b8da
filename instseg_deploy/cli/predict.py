"""`instseg predict`: overlays and COCO-format results for images or folders of images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import cv2
import typer

from instseg_deploy.cli.common import (
    BackendOption,
    ConfigOption,
    HintOption,
    ModelOption,
    PrecisionOption,
    ProvidersOption,
    ThreadsOption,
    WeightsOption,
    console,
    progress_bar,
    providers_list,
    rate_text,
    user_errors,
)
from instseg_deploy.errors import ImageError, InstsegError

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
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images.", show_default=False),
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
) -> None:
    """Run the model on images; write one overlay PNG per image and a COCO results JSON."""
    from instseg_deploy.atomic import atomic_path, write_json
    from instseg_deploy.class_names import parse_class_names
    from instseg_deploy.coco_format import instances_to_coco
    from instseg_deploy.image_io import list_images, read_image
    from instseg_deploy.runtime.factory import load_predictor
    from instseg_deploy.visualize import draw_instances

    if not 0.0 <= score_thresh <= 1.0:
        raise InstsegError(f"--score-thresh must be in [0, 1], got {score_thresh}")
    paths = list_images(inputs)
    predictor = load_predictor(backend, config=config, weights=weights, model=model, score_thresh=score_thresh,
                               device=device, providers=providers_list(providers), threads=threads,
                               precision=precision, hint=hint)
    if class_names:
        predictor.class_names = parse_class_names(class_names, len(predictor.class_names))
    out.mkdir(parents=True, exist_ok=True)
    results, failures = [], []
    start = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("predict", total=len(paths), rate="")
        for image_id, (path, stem) in enumerate(zip(paths, _unique_stems(paths)), start=1):
            try:
                image, note = read_image(path)
            except ImageError as e:
                failures.append(str(e))
                console.print(f"[red]skipped:[/] {e}", highlight=False)
                progress.advance(task)
                continue
            if note:
                console.print(f"[yellow]note:[/] {note}", highlight=False)
            instances = predictor(image)
            with atomic_path(out / f"{stem}.png") as tmp:
                ok, png = cv2.imencode(".png", draw_instances(image, instances, predictor.class_names))
                tmp.write_bytes(png.tobytes())
            for entry in instances_to_coco(instances, image_id):
                entry["file_name"] = path.name
                results.append(entry)
            progress.update(task, advance=1, rate=rate_text(image_id, time.perf_counter() - start))
    write_json(out / "results.json", results)
    done = len(paths) - len(failures)
    console.print(f"{done} image(s), {len(results)} instance(s) -> {out}/ (overlays *.png, results.json)")
    if failures:
        raise InstsegError(f"{len(failures)} of {len(paths)} image(s) could not be read; first: {failures[0]}")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(predict)
