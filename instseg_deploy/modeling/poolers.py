"""Multi-level RoIAlign (detectron2's ROIPooler): a function, and the pooler module that binds its settings.

The ROI heads pool through a :class:`MultilevelRoIAlign` they are given (torchvision's
``box_roi_pool`` / ``mask_roi_pool``), so export can build them with another pooler of the same
contract -- our one-node TensorRT plugin -- without touching this module.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import roi_align

from instseg_deploy.config.types import PoolerConfig


def assign_levels(boxes: torch.Tensor, min_level: int, max_level: int, canonical_box_size: int,
                  canonical_level: int) -> torch.Tensor:
    """FPN level index (0-based from ``min_level``) of each (R, 4) box: Eq. 1 of the FPN paper."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    levels = torch.floor(canonical_level + torch.log2(torch.sqrt(areas) / canonical_box_size + 1e-8))
    return torch.clamp(levels, min=min_level, max=max_level).to(torch.int64) - min_level


def multilevel_roi_align(features: list[torch.Tensor], rois: torch.Tensor, strides: list[int],
                         cfg: PoolerConfig) -> torch.Tensor:
    """Pool each RoI from the FPN level its size selects.

    features: [(N, C, Hl, Wl)] for levels 2..5; rois: (R, 5) as (batch_idx, x1, y1, x2, y2) in
    network-input pixels. Returns (R, C, cfg.resolution, cfg.resolution).
    """
    min_level = int(math.log2(strides[0]))
    max_level = int(math.log2(strides[-1]))
    levels = assign_levels(rois[:, 1:], min_level, max_level, cfg.canonical_box_size, cfg.canonical_level)
    channels = features[0].shape[1]
    out = rois.new_zeros((rois.shape[0], channels, cfg.resolution, cfg.resolution))
    for level, (feature, stride) in enumerate(zip(features, strides)):
        idx = torch.nonzero(levels == level).squeeze(1)
        pooled = roi_align(feature, rois[idx].to(feature.dtype), cfg.resolution, 1.0 / stride,
                           cfg.sampling_ratio, cfg.aligned)
        out = out.index_put((idx,), pooled.to(out.dtype))
    return out


class MultilevelRoIAlign(nn.Module):
    """:func:`multilevel_roi_align` with its FPN strides and settings bound; no parameters or buffers.

    forward(features, rois): features [(N, C, Hl, Wl)] for the levels of ``strides``; rois (R, 5)
    as (batch_idx, x1, y1, x2, y2) in network-input pixels. Returns (R, C, S, S), S = ``cfg.resolution``.
    """

    def __init__(self, strides: list[int], cfg: PoolerConfig):
        super().__init__()
        self.strides = list(strides)
        self.cfg = cfg

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        return multilevel_roi_align(features, rois, self.strides, self.cfg)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"strides={self.strides}, output_size={c.resolution}, sampling_ratio={c.sampling_ratio}, "
                f"aligned={c.aligned}")
