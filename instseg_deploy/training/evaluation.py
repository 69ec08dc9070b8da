"""COCO AP of the model being trained, on a validation set (every rank evaluates a shard)."""

from __future__ import annotations

import math

from instseg_deploy.config import InstsegConfig
from instseg_deploy.data.coco import CocoDataset
from instseg_deploy.evaluation.dataset_ap import IOU_TYPES, NoDetectionsError, dataset_ap
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.preprocess import PreprocessParams
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.runtime.torch_runner import TorchRunner


def evaluate_model(model: MaskRCNN, cfg: InstsegConfig, dataset: CocoDataset, device, rank: int,
                   world_size: int) -> dict[str, float] | None:
    """{"bbox/AP": ..., "segm/AP50": ...} (percent) on rank 0, None elsewhere.

    A model early in training may find nothing: that is AP 0, not a reason to stop the run.
    Leaves the model in eval mode: the caller switches it back to training.
    """
    predictor = Predictor(TorchRunner(model, device), PreprocessParams.from_model_config(cfg.model),
                          cfg.class_names)
    try:
        scored = dataset_ap(predictor, dataset, rank=rank, world_size=world_size)
    except NoDetectionsError:
        return {f"{iou_type}/AP": 0.0 for iou_type in IOU_TYPES}
    if scored is None:
        return None
    metrics: dict[str, float] = {}
    for iou_type, result in scored.results.items():
        for name, value in result.metrics().items():
            if not name.startswith("AP-"):
                metrics[f"{iou_type}/{name}"] = None if math.isnan(value) else value
    return metrics
