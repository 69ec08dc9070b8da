"""Building blocks with detectron2's parameter names (so checkpoints load by name)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (detectron2's FrozenBN).

    At inference it computes exactly what ``BatchNorm2d.eval()`` does; its buffers have the
    same names, so a "BN" checkpoint and a "FrozenBN" one load into either.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # "BN" checkpoints carry num_batches_tracked; it has no meaning for frozen stats.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def make_norm(norm: str, channels: int) -> nn.Module | None:
    """The normalisation layer detectron2 builds for ``norm`` ("" means none)."""
    if norm == "":
        return None
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm in ("BN", "SyncBN", "naiveSyncBN"):
        # Sync variants only differ in training across processes; DDP code converts them.
        return nn.BatchNorm2d(channels)
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    raise ValueError(f"unsupported norm {norm!r}")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with an optional norm and activation, named like detectron2's wrapper."""

    def __init__(self, *args, norm: nn.Module | None = None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def c2_msra_fill(module: nn.Module) -> None:
    """detectron2's default conv init (kaiming normal, fan_out, zero bias)."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_xavier_fill(module: nn.Module) -> None:
    """detectron2's FPN/FC init (kaiming uniform with a=1, zero bias)."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def add_conv_stack(module: nn.Module, prefix: str, in_channels: int, num_conv: int, conv_dim: int,
                   norm: str) -> int:
    """Add ``num_conv`` 3x3 conv (+ norm) + ReLU layers named ``{prefix}1..N`` to ``module`` (the
    box and mask heads' conv towers, detectron2's names and MSRA init); returns the output channels."""
    channels = in_channels
    for i in range(num_conv):
        conv = Conv2d(channels, conv_dim, 3, padding=1, bias=norm == "", norm=make_norm(norm, conv_dim),
                      activation=F.relu)
        c2_msra_fill(conv)
        module.add_module(f"{prefix}{i + 1}", conv)
        channels = conv_dim
    return channels
