"""ResNet bottom-up backbone (detectron2 layout: stem, res2..res5)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from instseg_deploy.config.types import ResNetConfig
from instseg_deploy.modeling.layers import Conv2d, c2_msra_fill, make_norm

_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class BasicStem(nn.Module):
    """7x7/2 conv + norm + ReLU + 3x3/2 max pool: (N,3,H,W) -> (N,C,H/4,W/4)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False,
                            norm=make_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> Conv2d | None:
    if in_channels == out_channels:
        return None
    conv = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, norm=make_norm(norm, out_channels))
    c2_msra_fill(conv)
    return conv


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False,
                            norm=make_norm(norm, out_channels))
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False,
                            norm=make_norm(norm, out_channels))
        for conv in (self.conv1, self.conv2):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu_(self.conv1(x)))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + identity)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (grouped) -> 1x1 with the stride on the 1x1 (MSRA) or the 3x3 (torchvision)."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int, stride: int,
                 num_groups: int, norm: str, stride_in_1x1: bool):
        super().__init__()
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False,
                            norm=make_norm(norm, bottleneck_channels))
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=1,
                            groups=num_groups, bias=False, norm=make_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False, norm=make_norm(norm, out_channels))
        for conv in (self.conv1, self.conv2, self.conv3):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + identity)


class ResNet(nn.Module):
    """Returns {"res2": stride 4, "res3": 8, "res4": 16, "res5": 32} feature maps."""

    def __init__(self, cfg: ResNetConfig, in_channels: int = 3):
        super().__init__()
        self.stem = BasicStem(in_channels, cfg.stem_out_channels, cfg.norm)
        self.stage_names = ("res2", "res3", "res4", "res5")
        self.out_channels: dict[str, int] = {}
        self.strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        channels = cfg.stem_out_channels
        out_channels = cfg.res2_out_channels
        bottleneck = cfg.num_groups * cfg.width_per_group
        for i, (name, num_blocks) in enumerate(zip(self.stage_names, _BLOCKS_PER_STAGE[cfg.depth])):
            blocks = []
            for b in range(num_blocks):
                stride = 2 if (b == 0 and i > 0) else 1
                if cfg.depth in (18, 34):
                    blocks.append(BasicBlock(channels, out_channels, stride, cfg.norm))
                else:
                    blocks.append(BottleneckBlock(channels, out_channels, bottleneck, stride,
                                                  cfg.num_groups, cfg.norm, cfg.stride_in_1x1))
                channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = out_channels
            out_channels *= 2
            bottleneck *= 2
        self.freeze(cfg.freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the stem (1) and the first stages (2..5), as detectron2 does."""
        modules = [self.stem] + [getattr(self, n) for n in self.stage_names]
        for module in modules[:freeze_at]:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        outputs = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs
