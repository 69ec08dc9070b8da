"""`instseg eval`: COCO box/mask AP of a backend on a dataset, or of an existing results file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from instseg_deploy.cli.common import (
    BackendOption,
    ConfigOption,
    HintOption,
    ModelNameOption,
    ModelOption,
    PrecisionOption,
    ProtocolOption,
    ProvidersOption,
    ThreadsOption,
    UrlOption,
    WeightsOption,
    annotations_option,
    check_mask_format_option,
    coco_root_option,
    config_overrides,
    console,
    image_progress,
    images_option,
    mask_format_option,
    overlap_option,
    overrides_argument,
    providers_list,
    user_errors,
)
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg eval --config config.yaml --weights model_final.pth --coco-root datasets/coco --out eval_torch/

  instseg eval --backend ort --model model.onnx --images shapes/val/images --annotations shapes/val/annotations.json

  instseg eval --backend triton --url 127.0.0.1:8000 --images shapes/val/images \\
      --annotations shapes/val/annotations.json

  instseg eval --backend openvino --model model.xml --precision bf16 --images shapes/val/images \\
      --annotations shapes/val/annotations.json

  instseg eval --predictions coco_instances_results.json --annotations instances_val2017.json

  torchrun --nproc_per_node 2 -m instseg_deploy.cli.main eval --config config.yaml --weights model_final.pth \\
      --coco-root coco
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
    from instseg_deploy.atomic import output_set

    metrics = {t: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.metrics().items()}
               for t, r in results.items()}
    with output_set(out) as files:  # one set: a stale detections.json of an earlier run is removed
        if detections is not None:
            files.write_json("detections.json", detections)
        files.write_json("metrics.json", metrics)


@user_errors
def evaluate(
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    backend: str = BackendOption,
    model: Optional[Path] = ModelOption,
    url: Optional[str] = UrlOption,
    protocol: str = ProtocolOption,
    model_name: str = ModelNameOption,
    providers: str = ProvidersOption,
    threads: int = ThreadsOption,
    precision: str = PrecisionOption,
    hint: str = HintOption,
    images: Optional[Path] = images_option(),
    annotations: Optional[Path] = annotations_option(),
    coco_root: Optional[Path] = coco_root_option(),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Evaluate this COCO results file instead "
                                               "of running a model.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write metrics.json and detections.json here.",
                                       show_default=False),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images.", min=1),
    evaluator: str = typer.Option("faster-coco-eval", "--evaluator", help="faster-coco-eval or pycocotools."),
    device: str = typer.Option("cpu", "--device", help="torch device for --backend torch."),
    score_thresh: Optional[float] = typer.Option(None, "--score-thresh", help="Keep detections scoring at least "
                                                 "this (default: the model's own test threshold).",
                                                 show_default=False),
    mask_format: str = mask_format_option("rle", "How masks are made before scoring: rle (each box region "
                                          "alone), cropped, dense (full-image masks, the reference path; same "
                                          "AP) or none (box AP only)."),
    overlap: bool = overlap_option(),
    opts: Optional[list[str]] = overrides_argument(),
) -> None:
    """COCO bbox and segm AP (detectron2's numbers) of a backend, or of an existing results file."""
    from instseg_deploy.data.coco import check_results, dataset_paths, read_json
    from instseg_deploy.evaluation.coco_eval import evaluate as coco_evaluate
    from instseg_deploy.evaluation.coco_eval import iou_types_present, load_ground_truth

    if predictions is not None:
        if annotations is None:
            raise InstsegError("--predictions needs --annotations")
        gt = load_ground_truth(_checked_annotations(annotations), evaluator)
        sizes = {im["id"]: (im["height"], im["width"]) for im in gt.loadImgs(gt.getImgIds())
                 if "height" in im and "width" in im}
        detections = check_results(read_json(predictions, "results file"), set(gt.getImgIds()),
                                   set(gt.getCatIds()), str(predictions), sizes)
        results = {t: coco_evaluate(gt, detections, t, evaluator) for t in iou_types_present(detections)}
        print_tables(results, predictions.name)
        write_outputs(out, results, None)
        return

    images, annotations = dataset_paths(images, annotations, coco_root)
    _evaluate_backend(_BackendRun(backend=backend, config=config, weights=weights, model=model,
                                  server=(url, protocol, model_name),
                                  providers=providers_list(providers), threads=threads, precision=precision,
                                  hint=hint, device=device, images=images,
                                  annotations=annotations, limit=limit, evaluator=evaluator, out=out,
                                  score_thresh=score_thresh, mask_format=check_mask_format_option(mask_format),
                                  overlap=overlap, overrides=tuple(config_overrides(opts))))


def _checked_annotations(annotations: Path) -> Path:
    from instseg_deploy.data.coco import DatasetError, read_json

    data = read_json(annotations, "annotations file")
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise DatasetError(f"{annotations} is not a COCO instances file (needs images, annotations, categories)")
    return annotations


@dataclass(frozen=True, kw_only=True)
class _BackendRun:
    """An `instseg eval` of a backend: the predictor to load, the dataset, where the results go."""

    backend: str
    config: Optional[Path]
    weights: Optional[Path]
    model: Optional[Path]
    server: tuple[Optional[str], str, str]  # --backend triton: url, protocol, model name
    providers: tuple[str, ...]
    threads: int
    precision: str
    hint: str
    device: str
    images: Path
    annotations: Path
    limit: Optional[int]
    evaluator: str
    out: Optional[Path]
    score_thresh: Optional[float]
    mask_format: str
    overlap: bool
    overrides: tuple[str, ...]


def _evaluate_backend(run: _BackendRun) -> None:
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.distributed import finish, init_from_env
    from instseg_deploy.evaluation.dataset_ap import dataset_ap
    from instseg_deploy.evaluation.inference import shard
    from instseg_deploy.runtime.factory import load_predictor

    dataset = load_coco_dataset(run.images, _checked_annotations(run.annotations))
    records = dataset.images[:run.limit] if run.limit else dataset.images
    # Ranks exchange only Python lists of detections: gloo carries them whatever the model's device.
    rank, world_size = init_from_env("gloo")
    predictor = load_predictor(run.backend, config=run.config, weights=run.weights, model=run.model,
                               device=run.device, providers=run.providers, threads=run.threads,
                               precision=run.precision, hint=run.hint, score_thresh=run.score_thresh,
                               mask_format=run.mask_format, overrides=run.overrides, url=run.server[0],
                               protocol=run.server[1], model_name=run.server[2])
    label = f"eval {run.backend}" + (f" (rank {rank}/{world_size})" if world_size > 1 else "")
    with image_progress(label, len(shard(records, rank, world_size))) as on_image:
        scored = dataset_ap(predictor, dataset, records, evaluator=run.evaluator, rank=rank, world_size=world_size,
                            on_image=on_image, overlap=run.overlap)
    if rank == 0:
        print_tables(scored.results, f"{run.backend} on {run.annotations.name} ({len(records)} images)")
        write_outputs(run.out, scored.results, scored.detections)
        console.print(f"{len(records)} images, {len(scored.detections)} detections"
                      + (f" -> {run.out}/metrics.json, detections.json" if run.out else ""), markup=False)
    finish(world_size)


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=EXAMPLES)(evaluate)
