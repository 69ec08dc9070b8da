"""detectron2's DefaultAnchorGenerator: per-level cell anchors shifted over the feature grid."""

from __future__ import annotations

import math

import torch
from torch import nn

from instseg_deploy.config.types import AnchorConfig


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """(len(sizes)*len(aspect_ratios), 4) anchors centred on (0, 0), sizes major."""
    anchors = []
    for size in sizes:
        area = size**2.0
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """Anchors for each level as (Hi*Wi*A, 4), location-major then cell anchor (no rounding)."""

    def __init__(self, cfg: AnchorConfig, strides: list[int]):
        super().__init__()
        self.strides = strides
        self.offset = cfg.offset
        for i, (sizes, ratios) in enumerate(zip(cfg.sizes, cfg.aspect_ratios)):
            self.register_buffer(f"cell_anchors_{i}", cell_anchors(sizes, ratios), persistent=False)
        self.num_levels = len(strides)

    @property
    def num_anchors_per_location(self) -> list[int]:
        return [getattr(self, f"cell_anchors_{i}").shape[0] for i in range(self.num_levels)]

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        anchors = []
        for i, (feature, stride) in enumerate(zip(features, self.strides)):
            base = getattr(self, f"cell_anchors_{i}")
            height, width = feature.shape[-2:]
            shifts_x = torch.arange(width, device=base.device, dtype=torch.float32) * stride + self.offset * stride
            shifts_y = torch.arange(height, device=base.device, dtype=torch.float32) * stride + self.offset * stride
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x = shift_x.reshape(-1)
            shift_y = shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return anchors
