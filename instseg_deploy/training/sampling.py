"""detectron2's subsample_labels: a fixed-size random sample with a cap on the positives."""

from __future__ import annotations

import torch


def subsample_labels(labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick at most ``num_samples`` elements, at most ``positive_fraction`` of them positive.

    labels: (P,) int; -1 is ignored, ``bg_label`` is negative, anything else positive. When
    there are too few positives, negatives fill the sample. Returns (positive indices,
    negative indices), each a random subset (int64, on ``labels``' device).
    ``generator``: a CPU generator, so a run is reproducible whatever the device.
    """
    positive = torch.nonzero((labels != -1) & (labels != bg_label)).squeeze(1)
    negative = torch.nonzero(labels == bg_label).squeeze(1)
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    perm_pos = torch.randperm(positive.numel(), generator=generator)[:num_pos].to(labels.device)
    perm_neg = torch.randperm(negative.numel(), generator=generator)[:num_neg].to(labels.device)
    return positive[perm_pos], negative[perm_neg]
