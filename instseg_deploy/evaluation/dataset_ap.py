"""Predict a dataset and score it: COCO box and mask AP of a predictor, over one or several processes.

The one copy of "run the model on every image, then COCOeval" that `instseg eval`, the demo, training's
periodic evaluation, the INT8 sensitivity report and the TensorRT accuracy tests share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from instseg_deploy.data.coco import CocoDataset, ImageRecord
from instseg_deploy.distributed import gather_lists
from instseg_deploy.errors import InstsegError
from instseg_deploy.evaluation.coco_eval import ENGINES, EvalResult, evaluate, load_ground_truth
from instseg_deploy.evaluation.inference import predict_dataset, shard
from instseg_deploy.runtime.predictor import Predictor

IOU_TYPES = ("bbox", "segm")


class NoDetectionsError(InstsegError):
    """The predictor found nothing on any image: COCOeval has no results to load."""


@dataclass(frozen=True)
class DatasetAP:
    """results: {"bbox" | "segm": EvalResult}; detections: every image's COCO results (dataset ids, RLE masks)."""

    results: dict[str, EvalResult]
    detections: list[dict]

    def ap(self) -> dict[str, float]:
        """{"bbox": AP, "segm": AP} in percent."""
        return {t: r.metrics()["AP"] for t, r in self.results.items()}


def dataset_ap(predictor: Predictor, dataset: CocoDataset, images: Sequence[ImageRecord] | None = None, *,
               evaluator: str = ENGINES[0], rank: int = 0, world_size: int = 1,
               on_image: Callable[[], None] | None = None, overlap: bool = True) -> DatasetAP | None:
    """COCO AP of ``predictor`` on ``images`` (default: all of ``dataset``'s), scored on exactly those images.

    Masks are scored in whatever format the predictor makes (all give the same RLE); a predictor
    with ``mask_format="none"`` is scored on boxes only.
    Every rank predicts its strided shard of ``images`` (``on_image`` is called after each of them) and
    rank 0 gathers the detections and evaluates; the other ranks return None. Every rank must call this
    (the gather is a collective). Raises NoDetectionsError on rank 0 when no image has a detection.
    """
    images = list(dataset.images if images is None else images)
    mine = predict_dataset(predictor, dataset, shard(images, rank, world_size), on_image, overlap)
    detections = gather_lists(mine, world_size)
    if rank != 0:
        return None
    if not detections:
        raise NoDetectionsError(f"the model found no detections on the {len(images)} image(s) of "
                                f"{dataset.annotations_path.name}; nothing to evaluate")
    gt = load_ground_truth(dataset.annotations_path, evaluator)
    # Restricting to the predicted images scores a subset (--limit, a sensitivity sample) against its own
    # ground truth only; with every image of the file it is COCOeval's default.
    ids = [r.id for r in images]
    iou_types = IOU_TYPES if getattr(predictor, "mask_format", None) != "none" else ("bbox",)  # "none": boxes only
    return DatasetAP({t: evaluate(gt, detections, t, evaluator, ids) for t in iou_types}, detections)
