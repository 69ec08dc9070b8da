"""`instseg eval`: COCO box/mask AP of a backend on a dataset, or of an existing results file."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from instseg_deploy.cli.common import (BackendOption, ConfigOption, ModelOption, ProvidersOption, ThreadsOption,
                                       WeightsOption, console, progress_bar, providers_list, rate_text, user_errors)
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg eval --config config.yaml --weights model_final.pth --coco-root datasets/coco --out eval_torch/

  instseg eval --backend ort --model model.onnx --images shapes/val/images --annotations shapes/val/annotations.json

  instseg eval --predictions coco_instances_results.json --annotations instances_val2017.json

  torchrun --nproc_per_node 2 -m instseg_deploy.cli.main eval --config config.yaml --weights model_final.pth --coco-root coco
"""


def print_tables(results: dict, title: str) -> None:
    out = Console()
    table = Table(title=f"{title}: COCO AP (%)")
    table.add_column("type")
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    for name in names:
        table.add_column(name, justify="right")
    for iou_type, res in results.items():
        m = res.metrics()
        table.add_row(iou_type, *("nan" if math.isnan(m[n]) else f"{m[n]:.3f}" for n in names))
    out.print(table)
    cats = Table(title="per-category AP (%)")
    cats.add_column("category")
    for iou_type in results:
        cats.add_column(iou_type, justify="right")
    first = next(iter(results.values()))
    for name in first.per_category:
        cats.add_row(name, *(f"{res.per_category.get(name, math.nan):.3f}" for res in results.values()))
    out.print(cats)


def write_outputs(out: Optional[Path], results: dict, detections: Optional[list]) -> None:
    if out is None:
        return
    from instseg_deploy.atomic import write_json

    out.mkdir(parents=True, exist_ok=True)
    if detections is not None:
        write_json(out / "detections.json", detections)
    metrics = {t: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.metrics().items()}
               for t, r in results.items()}
    write_json(out / "metrics.json", metrics)  # last: its presence means the run completed


@user_errors
def evaluate(
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    backend: str = BackendOption,
    model: Optional[Path] = ModelOption,
    providers: str = ProvidersOption,
    threads: int = ThreadsOption,
    images: Optional[Path] = typer.Option(None, "--images", help="Folder with the dataset's images.", show_default=False),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="COCO instances JSON (ground truth).",
                                               show_default=False),
    coco_root: Optional[Path] = typer.Option(None, "--coco-root", help="COCO 2017 layout: val2017/ + annotations/.",
                                             show_default=False),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Evaluate this COCO results file instead "
                                               "of running a model.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write metrics.json and detections.json here.",
                                       show_default=False),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images.", min=1),
    evaluator: str = typer.Option("faster-coco-eval", "--evaluator", help="faster-coco-eval or pycocotools."),
    device: str = typer.Option("cpu", "--device", help="torch device for --backend torch."),
) -> None:
    """COCO bbox and segm AP (detectron2's numbers) of a backend, or of an existing results file."""
    from instseg_deploy.data.coco import check_results, coco_root_paths, read_json
    from instseg_deploy.evaluation.coco_eval import evaluate as coco_evaluate
    from instseg_deploy.evaluation.coco_eval import iou_types_present, load_ground_truth

    if predictions is not None:
        if annotations is None:
            raise InstsegError("--predictions needs --annotations")
        gt = load_ground_truth(_checked_annotations(annotations), evaluator)
        detections = check_results(read_json(predictions, "results file"), set(gt.getImgIds()),
                                   set(gt.getCatIds()), str(predictions))
        results = {t: coco_evaluate(gt, detections, t, evaluator) for t in iou_types_present(detections)}
        print_tables(results, predictions.name)
        write_outputs(out, results, None)
        return

    if coco_root is not None:
        if images is not None or annotations is not None:
            raise InstsegError("give either --coco-root or --images with --annotations, not both")
        images, annotations = coco_root_paths(coco_root)
    if images is None or annotations is None:
        raise InstsegError("a dataset is needed: --images DIR --annotations FILE, or --coco-root DIR")
    _evaluate_backend(backend, config, weights, model, providers_list(providers), threads, images, annotations, out,
                      limit, evaluator, device)


def _checked_annotations(annotations: Path) -> Path:
    from instseg_deploy.data.coco import DatasetError, read_json

    data = read_json(annotations, "annotations file")
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise DatasetError(f"{annotations} is not a COCO instances file (needs images, annotations, categories)")
    return annotations


def _evaluate_backend(backend, config, weights, model, providers, threads, images, annotations, out, limit,
                      evaluator, device) -> None:
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.evaluation.distributed import finish, init_from_env
    from instseg_deploy.loading import load_predictor

    dataset = load_coco_dataset(images, _checked_annotations(annotations))
    records = dataset.images[:limit] if limit else dataset.images
    # Ranks exchange only Python lists of detections: gloo carries them whatever the model's device.
    rank, world_size = init_from_env("gloo")
    predictor = load_predictor(backend, config, weights, model, device=device, providers=providers, threads=threads)
    results, detections = evaluate_predictor(predictor, dataset, records, evaluator, f"eval {backend}",
                                             restrict=bool(limit), rank=rank, world_size=world_size)
    if rank == 0:
        print_tables(results, f"{backend} on {annotations.name} ({len(records)} images)")
        write_outputs(out, results, detections)
        console.print(f"{len(records)} images, {len(detections)} detections"
                      + (f" -> {out}/metrics.json, detections.json" if out else ""))
    finish(world_size)


def evaluate_predictor(predictor, dataset, records, evaluator: str, label: str, restrict: bool = False,
                       rank: int = 0, world_size: int = 1):
    """Predict this rank's share of ``records`` with a progress bar; on rank 0 return
    ({iou type: EvalResult}, all detections), elsewhere (None, None)."""
    from instseg_deploy.evaluation.coco_eval import evaluate as coco_evaluate
    from instseg_deploy.evaluation.coco_eval import load_ground_truth
    from instseg_deploy.evaluation.distributed import gather_lists
    from instseg_deploy.evaluation.inference import predict_dataset, shard

    mine = shard(records, rank, world_size)
    start = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(label + (f" (rank {rank}/{world_size})" if world_size > 1 else ""), total=len(mine),
                                 rate="")

        def on_image():
            done = progress.tasks[task].completed + 1
            progress.update(task, advance=1, rate=rate_text(int(done), time.perf_counter() - start))

        detections = predict_dataset(predictor, dataset, mine, on_image)
    detections = gather_lists(detections, world_size)
    if rank != 0:
        return None, None
    if not detections:
        raise InstsegError("the model found no detections on this dataset; nothing to evaluate")
    gt = load_ground_truth(dataset.annotations_path, evaluator)
    ids = [r.id for r in records] if restrict else None
    return {t: coco_evaluate(gt, detections, t, evaluator, ids) for t in ("bbox", "segm")}, detections


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=EXAMPLES)(evaluate)
