"""COCO AP of the model being trained, on a validation set (every rank evaluates a shard)."""

from __future__ import annotations

import math

from instseg_deploy.backends.torch_backend import TorchRunner
from instseg_deploy.config import InstsegConfig
from instseg_deploy.data.coco import CocoDataset
from instseg_deploy.evaluation.coco_eval import evaluate, load_ground_truth
from instseg_deploy.evaluation.distributed import gather_lists
from instseg_deploy.evaluation.inference import predict_dataset, shard
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.predictor import Predictor
from instseg_deploy.processing.preprocess import PreprocessParams


def evaluate_model(model: MaskRCNN, cfg: InstsegConfig, dataset: CocoDataset, device, rank: int,
                   world_size: int) -> dict[str, float] | None:
    """{"bbox/AP": ..., "segm/AP50": ...} (percent) on rank 0, None elsewhere.

    Leaves the model in eval mode: the caller switches it back to training.
    """
    predictor = Predictor(TorchRunner(model, device), PreprocessParams.from_model_config(cfg.model),
                          cfg.class_names)
    detections = gather_lists(predict_dataset(predictor, dataset, shard(dataset.images, rank, world_size)), world_size)
    if rank != 0:
        return None
    metrics: dict[str, float] = {}
    gt = load_ground_truth(dataset.annotations_path) if detections else None
    for iou_type in ("bbox", "segm"):
        if gt is None:
            metrics[f"{iou_type}/AP"] = 0.0
            continue
        for name, value in evaluate(gt, detections, iou_type).metrics().items():
            if not name.startswith("AP-"):
                metrics[f"{iou_type}/{name}"] = None if math.isnan(value) else value
    return metrics
