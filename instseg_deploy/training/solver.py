"""detectron2's solver: SGD parameter groups, WarmupMultiStepLR / WarmupCosineLR, clipping."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from instseg_deploy.errors import ConfigError

# detectron2's get_default_optimizer_params treats these as normalisation layers.
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
               nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)
SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR")


@dataclass(frozen=True)
class SolverConfig:
    """The SOLVER part of a detectron2 config (iterations count from 0)."""

    base_lr: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0
    weight_decay_bias: float | None = None
    bias_lr_factor: float = 1.0
    scheduler: str = "WarmupMultiStepLR"
    gamma: float = 0.1
    steps: tuple[int, ...] = (30000,)
    base_lr_end: float = 0.0
    max_iter: int = 40000
    warmup_factor: float = 0.001
    warmup_iters: int = 1000
    warmup_method: str = "linear"
    ims_per_batch: int = 16
    checkpoint_period: int = 5000
    clip_enabled: bool = False
    clip_type: str = "value"
    clip_value: float = 1.0
    clip_norm_type: float = 2.0
    amp: bool = False

    @staticmethod
    def from_tree(tree: dict[str, Any]) -> SolverConfig:
        s = tree["SOLVER"]
        clip = s["CLIP_GRADIENTS"]
        cfg = SolverConfig(
            base_lr=float(s["BASE_LR"]), momentum=float(s["MOMENTUM"]), nesterov=bool(s["NESTEROV"]),
            weight_decay=float(s["WEIGHT_DECAY"]),
            weight_decay_norm=None if s["WEIGHT_DECAY_NORM"] is None else float(s["WEIGHT_DECAY_NORM"]),
            weight_decay_bias=None if s.get("WEIGHT_DECAY_BIAS") is None else float(s["WEIGHT_DECAY_BIAS"]),
            bias_lr_factor=float(s["BIAS_LR_FACTOR"]), scheduler=s["LR_SCHEDULER_NAME"], gamma=float(s["GAMMA"]),
            steps=tuple(int(x) for x in s["STEPS"]), base_lr_end=float(s.get("BASE_LR_END", 0.0)),
            max_iter=int(s["MAX_ITER"]), warmup_factor=float(s["WARMUP_FACTOR"]), warmup_iters=int(s["WARMUP_ITERS"]),
            warmup_method=s["WARMUP_METHOD"], ims_per_batch=int(s["IMS_PER_BATCH"]),
            checkpoint_period=int(s["CHECKPOINT_PERIOD"]), clip_enabled=bool(clip["ENABLED"]),
            clip_type=clip["CLIP_TYPE"], clip_value=float(clip["CLIP_VALUE"]), clip_norm_type=float(clip["NORM_TYPE"]),
            amp=bool(s["AMP"]["ENABLED"]))
        cfg.validate()
        if int(s.get("REFERENCE_WORLD_SIZE", 0) or 0):
            raise ConfigError("SOLVER.REFERENCE_WORLD_SIZE (automatic rescaling to the number of processes) is not "
                              "supported; set it to 0 and scale IMS_PER_BATCH/BASE_LR/MAX_ITER yourself")
        return cfg

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"SOLVER.LR_SCHEDULER_NAME {self.scheduler!r} is not supported ({', '.join(SCHEDULERS)})")
        if self.warmup_method not in ("linear", "constant"):
            raise ConfigError(f"SOLVER.WARMUP_METHOD {self.warmup_method!r} is not supported (linear, constant)")
        if self.clip_enabled and self.clip_type not in ("value", "norm"):
            raise ConfigError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE {self.clip_type!r} is not supported (value, norm)")
        if self.max_iter < 1 or self.ims_per_batch < 1 or self.base_lr <= 0:
            raise ConfigError("SOLVER.MAX_ITER, IMS_PER_BATCH and BASE_LR must be positive")
        if list(self.steps) != sorted(self.steps):
            raise ConfigError(f"SOLVER.STEPS must be increasing, got {list(self.steps)}")


def parameter_groups(model: nn.Module, cfg: SolverConfig) -> list[dict[str, Any]]:
    """detectron2's get_default_optimizer_params + reduce_param_groups.

    Norm layers' parameters get WEIGHT_DECAY_NORM; parameters named "bias" get
    BASE_LR * BIAS_LR_FACTOR and WEIGHT_DECAY_BIAS (when set). Frozen parameters are left out;
    groups with equal settings are merged, in order of first appearance.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr, weight_decay = cfg.base_lr, cfg.weight_decay
            if isinstance(module, _NORM_TYPES) and cfg.weight_decay_norm is not None:
                weight_decay = cfg.weight_decay_norm
            if name == "bias":
                lr = cfg.base_lr * cfg.bias_lr_factor
                if cfg.weight_decay_bias is not None:
                    weight_decay = cfg.weight_decay_bias
            groups.setdefault((lr, weight_decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


def build_optimizer(model: nn.Module, cfg: SolverConfig) -> torch.optim.SGD:
    return torch.optim.SGD(parameter_groups(model, cfg), lr=cfg.base_lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, cfg: SolverConfig) -> float:
    """LR multiplier at ``iteration`` (detectron2's WarmupParamScheduler over the main schedule)."""
    def schedule(t: float) -> float:
        if cfg.scheduler == "WarmupCosineLR":
            end = cfg.base_lr_end / cfg.base_lr
            return end + 0.5 * (1.0 - end) * (1.0 + math.cos(math.pi * t / cfg.max_iter))
        steps = [s for s in cfg.steps if s <= cfg.max_iter]
        return cfg.gamma ** bisect.bisect_right(steps, t)

    warmup = min(cfg.warmup_iters, cfg.max_iter)
    if iteration >= warmup:
        return schedule(iteration)
    end = schedule(warmup)  # the warmup ramps up to where the main schedule is at its end
    if cfg.warmup_method == "constant":
        return end * cfg.warmup_factor
    alpha = iteration / warmup
    return end * (cfg.warmup_factor * (1 - alpha) + alpha)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SolverConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration, after the optimizer; its state dict is plain numbers."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda iteration: lr_factor(iteration, cfg))


def clip_gradients(optimizer: torch.optim.Optimizer, cfg: SolverConfig) -> None:
    """SOLVER.CLIP_GRADIENTS as detectron2 applies it: to each parameter on its own."""
    if not cfg.clip_enabled:
        return
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is None:
                continue
            if cfg.clip_type == "value":
                torch.nn.utils.clip_grad_value_(param, cfg.clip_value)
            else:
                torch.nn.utils.clip_grad_norm_(param, cfg.clip_value, cfg.clip_norm_type)
