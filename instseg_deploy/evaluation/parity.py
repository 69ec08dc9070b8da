"""One-to-one matching of two detection sets: how backends prove they give the same results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from instseg_deploy.processing.masks import as_format
from instseg_deploy.structures import Instances


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def rle_iou(a: dict, b: dict) -> float:
    """IoU of two COCO RLEs of one image (1.0 when both are empty, as :func:`mask_iou`)."""
    if mask_utils.area(a) == 0 and mask_utils.area(b) == 0:
        return 1.0
    return float(mask_utils.iou([a], [b], [0])[0, 0])


@dataclass
class MatchReport:
    """Result of matching ``candidate`` detections against ``reference`` ones."""

    num_reference: int
    num_candidate: int
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (reference index, candidate index)
    mask_ious: list[float] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def match_rate(self) -> float:
        """Pairs over the larger side's count (1.0 when both are empty): 1.0 exactly when every
        detection on both sides found a partner."""
        total = max(self.num_reference, self.num_candidate)
        return 1.0 if total == 0 else self.matched / total

    @property
    def min_mask_iou(self) -> float:
        return min(self.mask_ious, default=1.0)


def match_detections(reference: Instances, candidate: Instances, min_box_iou: float = 0.99,
                     max_score_diff: float = 1e-3) -> MatchReport:
    """Greedy matching in reference score order: same class, box IoU >= ``min_box_iou`` and
    |score difference| <= ``max_score_diff``; each candidate is used once. Matched masks' IoU
    is recorded when both sides have masks.

    Each reference, highest score first, takes the unused eligible candidate of highest box IoU
    (greedy, not an optimal assignment: a later reference may be left without a partner).
    """
    report = MatchReport(len(reference), len(candidate))
    if len(reference) == 0 or len(candidate) == 0:
        return report
    ious = box_iou(reference.boxes.astype(np.float64), candidate.boxes.astype(np.float64))
    # Mask IoU through RLE: works for every mask format without full-image masks.
    ref_rles, cand_rles = (as_format(inst, "rle") if inst.has_masks else None
                           for inst in (reference, candidate))
    ok = (reference.classes[:, None] == candidate.classes[None, :]) & (ious >= min_box_iou)
    ok &= np.abs(reference.scores[:, None].astype(np.float64) - candidate.scores[None, :]) <= max_score_diff
    used = np.zeros(len(candidate), dtype=bool)
    for r in np.argsort(-reference.scores, kind="stable"):
        options = np.flatnonzero(ok[r] & ~used)
        if options.size == 0:
            continue
        c = options[np.argmax(ious[r, options])]
        used[c] = True
        report.pairs.append((int(r), int(c)))
        if ref_rles is not None and cand_rles is not None:
            report.mask_ious.append(rle_iou(ref_rles[r], cand_rles[c]))
    return report
