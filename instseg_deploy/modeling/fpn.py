"""Feature pyramid on top of a ResNet: p2..p5 by top-down sum, p6 by max-pool of p5."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from instseg_deploy.config.types import FPNConfig
from instseg_deploy.modeling.layers import Conv2d, c2_xavier_fill, make_norm
from instseg_deploy.modeling.resnet import ResNet


class FPN(nn.Module):
    """(N,3,H,W) with H, W divisible by 32 -> {"p2": stride 4, ..., "p6": stride 64}, C channels each."""

    def __init__(self, bottom_up: ResNet, cfg: FPNConfig):
        super().__init__()
        self.bottom_up = bottom_up
        self.in_features = cfg.in_features
        self.fuse_type = cfg.fuse_type
        use_bias = cfg.norm == ""
        c = cfg.out_channels
        for feature in self.in_features:
            level = int(bottom_up.strides[feature]).bit_length() - 1  # stride 4 -> 2
            lateral = Conv2d(bottom_up.out_channels[feature], c, 1, bias=use_bias, norm=make_norm(cfg.norm, c))
            output = Conv2d(c, c, 3, padding=1, bias=use_bias, norm=make_norm(cfg.norm, c))
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"fpn_lateral{level}", lateral)
            self.add_module(f"fpn_output{level}", output)
        self.levels = [int(bottom_up.strides[f]).bit_length() - 1 for f in self.in_features]
        self.out_features = [f"p{lv}" for lv in self.levels] + [f"p{self.levels[-1] + 1}"]
        self.strides = {f"p{lv}": 2**lv for lv in self.levels + [self.levels[-1] + 1]}
        self.out_channels = c
        self.size_divisibility = 2 ** (self.levels[-1])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bottom_up = self.bottom_up(x)
        levels = self.levels[::-1]
        prev = getattr(self, f"fpn_lateral{levels[0]}")(bottom_up[self.in_features[-1]])
        results = [getattr(self, f"fpn_output{levels[0]}")(prev)]
        for feature, level in zip(self.in_features[-2::-1], levels[1:]):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = getattr(self, f"fpn_lateral{level}")(bottom_up[feature]) + top_down
            if self.fuse_type == "avg":
                prev = prev / 2
            results.insert(0, getattr(self, f"fpn_output{level}")(prev))
        # LastLevelMaxPool: p6 is a stride-2 subsample of p5.
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return dict(zip(self.out_features, results))
