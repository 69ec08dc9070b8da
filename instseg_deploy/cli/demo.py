"""`instseg demo`: the whole path on a fresh machine -- dataset, model, ONNX, AP torch vs ORT, pictures, speed."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from instseg_deploy.cli.common import console, image_progress, user_errors
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg demo --out demo_out

  instseg demo --out demo_synth --synth 60 --config my/config.yaml --weights my/model_final.pth
"""


# How many val images the demo draws, each as ground truth | prediction.
PICTURES = 4
AP_COLUMNS = (("bbox", "AP"), ("bbox", "AP50"), ("segm", "AP"), ("segm", "AP50"))


def _step(n: int, text: str) -> None:
    console.rule(f"[bold]{n}. {text}")


@user_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for every artefact of the demo."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Model config (default: the bundled example).",
                                          show_default=False),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Checkpoint (default: the bundled example).",
                                           show_default=False),
    synth: Optional[int] = typer.Option(None, "--synth", help="Evaluate on N freshly generated images instead of the "
                                        "bundled generated val set.", min=1, show_default=False),
    bench_iters: int = typer.Option(5, "--bench-iters", help="Timed iterations per benchmark row.", min=1),
) -> None:
    """Dataset -> model -> ONNX export -> COCO AP torch vs ONNX Runtime (vs OpenVINO) -> pictures -> speed table,
    all in --out, with summary.md."""
    from instseg_deploy.atomic import write_json
    from instseg_deploy.bench.report import markdown, plot, rich_table
    from instseg_deploy.bench.run import BenchRequest, run_bench
    from instseg_deploy.class_names import resolve_class_names
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.evaluation.dataset_ap import dataset_ap
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.factory import load_predictor
    from instseg_deploy.runtime.torch_model import load_model

    start = time.perf_counter()
    if config is not None and weights is None:
        raise InstsegError("--config needs --weights")
    if weights is None:
        config, weights = DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl"
        if not weights.is_file():
            raise InstsegError(f"the bundled example model is missing ({weights}); run from a clone of the "
                               "repository or pass --config/--weights")
    out.mkdir(parents=True, exist_ok=True)

    _step(1, "dataset")
    if synth:
        from instseg_deploy.data.synth import generate

        data_dir = out / "dataset"
        if not (data_dir / "annotations.json").is_file():
            generate(data_dir, synth, seed=0)
        images, annotations = data_dir / "images", data_dir / "annotations.json"
    else:
        images, annotations = DEMO_DATA / "shapes_val" / "images", DEMO_DATA / "shapes_val" / "annotations.json"
    dataset = load_coco_dataset(images, annotations)
    console.print(f"{len(dataset.images)} images, classes: {', '.join(dataset.class_names)}", markup=False)

    _step(2, "model")
    net, cfg = load_model(config, weights)
    # A checkpoint without names gets the dataset's, in the export and in every backend below.
    cfg.class_names = resolve_class_names(cfg.model.num_classes, carried=cfg.class_names, dataset=dataset.class_names)
    console.print(f"{cfg.source}: ResNet-{cfg.model.resnet.depth}-FPN Mask R-CNN, {cfg.model.num_classes} classes, "
                  f"{sum(p.numel() for p in net.parameters()):,} parameters", markup=False)

    _step(3, "ONNX export")
    with console.status("tracing and exporting"):
        report = export_onnx(net, cfg, out / "model.onnx")
    console.print(f"{report.path}: {report.nodes_after} nodes (from {report.nodes_before}), "
                  f"{report.size_bytes / 2**20:.1f} MiB", markup=False)

    exported = ("ort", "openvino") if _openvino_available() else ("ort",)
    names = {"ort": "ONNX Runtime", "openvino": "OpenVINO f32"}
    _step(4, "COCO AP: torch vs " + " vs ".join(names[b] for b in exported))
    metrics, predictors = {}, {}
    for backend in ("torch", *exported):
        kwargs = {"config": config, "weights": weights} if backend == "torch" else {"model": report.path}
        # AP needs the model's own (low) threshold; the pictures step filters at DEFAULT_SCORE_THRESH itself
        predictor = predictors[backend] = load_predictor(backend, precision="f32", score_thresh=None, **kwargs)
        predictor.class_names = cfg.class_names
        with image_progress(f"eval {backend}", len(dataset.images)) as on_image:
            scored = dataset_ap(predictor, dataset, evaluator="faster-coco-eval", on_image=on_image)
        metrics[backend] = {t: r.metrics() for t, r in scored.results.items()}
        write_json(out / f"detections_{backend}.json", scored.detections)
    write_json(out / "metrics.json", metrics)
    table = Table(title="COCO AP (%), same checkpoint")
    for col in ("backend", *(f"{t} {k}" for t, k in AP_COLUMNS)):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for backend, m in metrics.items():
        table.add_row(backend, *(_fmt(m[t][k]) for t, k in AP_COLUMNS))
    Console().print(table)

    _step(5, f"pictures: ground truth | {names['ort']}")
    pictures = write_pictures(out / "pictures", dataset, predictors["ort"], names["ort"])
    console.print(f"{len(pictures)} pictures in {out / 'pictures'}/", markup=False)

    _step(6, "speed")
    request = BenchRequest(backends=("torch", *exported), config=config, weights=weights, models=(report.path,),
                           images=images, batches=(1,), thread_counts=(_cores(),), warmup=1, iters=bench_iters)
    with console.status("measuring") as status:
        result = run_bench(request, on_message=status.update)
    write_json(out / "bench.json", result)
    (out / "bench.md").write_text(markdown(result), encoding="utf-8")
    plot(result, out / "bench.png")
    Console(width=max(Console().width, 150)).print(rich_table(result))
    write_summary(out, f"{cfg.source}, {weights.name}", dataset, metrics, pictures)
    console.print(f"done in {time.perf_counter() - start:.0f} s; artefacts in {out}/: summary.md, model.onnx, "
                  "metrics.json, detections_*.json, pictures/*.png, bench.json/.md/.png", markup=False)


def write_pictures(folder: Path, dataset, predictor, backend_name: str, count: int = PICTURES) -> list[Path]:
    """The first ``count`` images of ``dataset`` as ground truth | ``predictor``'s detections (those scoring at
    least the default threshold), side by side, one PNG each; returns their paths."""
    import cv2

    from instseg_deploy.atomic import write_bytes
    from instseg_deploy.data.coco import read_dataset_image
    from instseg_deploy.runtime.factory import DEFAULT_SCORE_THRESH
    from instseg_deploy.visualize import draw_instances, ground_truth_instances, titled_panels

    by_image = _annotations_by_image(dataset.annotations_path)
    paths = []
    for record in dataset.images[:count]:
        image = read_dataset_image(record.path, record.id, record.height, record.width)
        truth = ground_truth_instances(by_image.get(record.id, []), image.shape[:2], dataset.category_ids)
        found = predictor(image)
        found = found.select(found.scores >= DEFAULT_SCORE_THRESH)
        picture = titled_panels([
            (f"ground truth ({len(truth)})", draw_instances(image, truth, predictor.class_names, show_scores=False)),
            (f"{backend_name} ({len(found)}, score >= {DEFAULT_SCORE_THRESH})",
             draw_instances(image, found, predictor.class_names)),
        ])
        paths.append(folder / f"{record.path.stem}.png")
        write_bytes(paths[-1], cv2.imencode(".png", picture)[1].tobytes())
    return paths


def _annotations_by_image(annotations: Path) -> dict[int, list[dict]]:
    from instseg_deploy.data.coco import read_json

    by_image: dict[int, list[dict]] = {}
    for ann in read_json(annotations, "annotations file").get("annotations", []):
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    return by_image


def write_summary(out: Path, model: str, dataset, metrics: dict, pictures: list[Path]) -> None:
    """summary.md: what ran, the AP table, links to the speed report and the pictures (shown inline)."""
    from instseg_deploy.atomic import write_text

    lines = ["# instseg demo", "", f"Model: {model}. Dataset: {dataset.annotations_path} ({len(dataset.images)} "
             f"images; classes {', '.join(dataset.class_names)}).", "", "## COCO AP (%)", "",
             "| backend | " + " | ".join(f"{t} {k}" for t, k in AP_COLUMNS) + " |",
             "|---|" + "---:|" * len(AP_COLUMNS)]
    lines += [f"| {backend} | " + " | ".join(_fmt(m[t][k]) for t, k in AP_COLUMNS) + " |"
              for backend, m in metrics.items()]
    lines += ["", "## Speed", "", "[bench.md](bench.md) ([bench.json](bench.json))", "", "![speed](bench.png)", "",
              "## Pictures: ground truth | prediction", ""]
    lines += [f"![{path.stem}]({path.relative_to(out).as_posix()})\n" for path in pictures]
    write_text(out / "summary.md", "\n".join(lines) + "\n")


def _fmt(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.2f}"


def _openvino_available() -> bool:
    from instseg_deploy.runtime.openvino import import_openvino

    try:
        import_openvino()
    except InstsegError:
        return False
    return True


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(demo)
