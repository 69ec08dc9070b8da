"""COCO box/mask AP exactly as detectron2's COCOEvaluator reports it.

Two engines compute the same COCOeval: faster-coco-eval (default: 3-5x faster, a C++
implementation) and pycocotools (the reference). Both reproduce cocoapi's published numbers
(see tests/test_coco_eval.py).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from dataclasses import dataclass, field

import numpy as np

from instseg_deploy.errors import InstsegError

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
REPORTED = STAT_NAMES[:6]  # what detectron2 prints and metrics.json holds (percent)
ENGINES = ("faster-coco-eval", "pycocotools")


@dataclass
class EvalResult:
    """stats: the 12 COCOeval numbers as fractions (-1 where undefined); per_category: AP percent."""

    iou_type: str
    stats: list[float]
    per_category: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """detectron2's dict: AP..APl in percent (NaN where undefined) plus "AP-<class>"."""
        out = {name: (v * 100 if v >= 0 else math.nan) for name, v in zip(REPORTED, self.stats)}
        out.update({f"AP-{name}": ap for name, ap in self.per_category.items()})
        return out


def _classes(engine: str):
    if engine == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise InstsegError("faster-coco-eval is not installed (pip install faster-coco-eval), "
                               "or use --evaluator pycocotools") from None
        return COCO, COCOeval_faster
    if engine == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise InstsegError(f"unknown evaluator {engine!r} (choose from {', '.join(ENGINES)})")


def load_ground_truth(annotations: str | os.PathLike, engine: str = ENGINES[0]):
    coco_cls, _ = _classes(engine)
    with contextlib.redirect_stdout(io.StringIO()):
        return coco_cls(str(annotations))


def evaluate(gt, results: list[dict], iou_type: str, engine: str = ENGINES[0],
             image_ids: list[int] | None = None) -> EvalResult:
    """Evaluate COCO results against ground truth loaded by :func:`load_ground_truth`.

    As detectron2 does for "segm", boxes are dropped from the results first: loadRes would
    otherwise take each detection's area from its box instead of its mask. ``image_ids``
    restricts the evaluation to those images (all ground-truth images by default).
    """
    _, eval_cls = _classes(engine)
    if iou_type not in ("bbox", "segm"):
        raise ValueError(iou_type)
    key = "bbox" if iou_type == "bbox" else "segmentation"
    results = [r for r in results if key in r]
    if not results:
        raise InstsegError(f"no {iou_type} detections to evaluate")
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))
        coco_eval = eval_cls(gt, dt, iou_type)
        if image_ids is not None:
            coco_eval.params.imgIds = sorted(image_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    precision = coco_eval.eval["precision"]  # (iou, recall, class, area range, max dets)
    per_category = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_category[gt.cats[cat_id]["name"]] = float(np.mean(p) * 100) if p.size else math.nan
    return EvalResult(iou_type, [float(s) for s in coco_eval.stats[:12]], per_category)


def iou_types_present(results: list[dict]) -> list[str]:
    types = []
    if any("bbox" in r for r in results):
        types.append("bbox")
    if any("segmentation" in r for r in results):
        types.append("segm")
    return types
