"""detectron2's Matcher: assign each prediction (anchor or proposal) to its best ground truth."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of xyxy boxes: (N, 4) x (M, 4) -> (N, M).

    As detectron2's ``pairwise_iou``: a pair that does not overlap has IoU 0, even when a
    box is empty (no 0/0 NaN).
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return torch.where(inter > 0, inter / (area1[:, None] + area2[None, :] - inter), torch.zeros_like(inter))


class Matcher:
    """Label predictions by the IoU with their best-matching ground truth.

    ``thresholds`` split [0, 1] into intervals and ``labels`` (one more than thresholds) give
    each interval's label: 1 foreground, 0 background, -1 ignored. detectron2's RPN uses
    thresholds (0.3, 0.7) with labels (0, -1, 1); its ROI heads (0.5,) with labels (0, 1).

    With ``allow_low_quality_matches``, every prediction whose IoU with some ground truth
    equals that ground truth's best IoU is labelled 1 too (Faster R-CNN's rule that each
    ground truth gets at least one positive anchor).
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        thresholds = list(thresholds)
        if any(low > high for low, high in itertools.pairwise(thresholds)):
            raise ValueError(f"matcher thresholds must be sorted, got {thresholds}")
        if any(label not in (-1, 0, 1) for label in labels) or len(labels) != len(thresholds) + 1:
            raise ValueError(f"matcher needs len(thresholds) + 1 labels in {{-1, 0, 1}}, got {list(labels)}")
        self.thresholds = [-math.inf] + thresholds + [math.inf]
        self.labels = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """quality: (G, P) IoU of G ground-truth boxes with P predictions.

        Returns matches (P,) int64, the index of each prediction's best ground truth, and
        labels (P,) int8. Without ground truth every prediction gets ``labels[0]``.
        """
        if quality.numel() == 0:
            matches = quality.new_zeros((quality.shape[1],), dtype=torch.int64)
            return matches, quality.new_full((quality.shape[1],), self.labels[0], dtype=torch.int8)
        best_quality, matches = quality.max(dim=0)
        labels = matches.new_ones(matches.shape, dtype=torch.int8)
        for label, (low, high) in zip(self.labels, itertools.pairwise(self.thresholds)):
            labels[(best_quality >= low) & (best_quality < high)] = label
        if self.allow_low_quality_matches:
            best_per_gt = quality.max(dim=1).values
            _, predictions = torch.nonzero(quality == best_per_gt[:, None], as_tuple=True)
            labels[predictions] = 1
        return matches, labels
