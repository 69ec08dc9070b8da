"""An architecture with seeded weights that does a trained model's work, for timing without a checkpoint.

Convolution time does not depend on the weights, but the ROI heads' does: they run on the proposals
the RPN keeps and the detections the box head makes. A network fresh from its initialisers, with
its frozen batch norms at mean 0 / variance 1, grows its activations block after block; in
R50-FPN-3x at 800x1333 the RPN's box deltas then send most proposals outside the image, so 11-98
survive where a trained model keeps POST_NMS_TOPK_TEST (1000: detectron2's own run of the
fixture checkpoint kept 1000 on each of its 22 golden images), and how many survive depends on
each backend's rounding (an INT8 file kept 96 in ONNX Runtime and 1000 in OpenVINO). Giving every
batch norm the statistics of its own input on one image restores a trained network's scale: the
same architecture then keeps the capped 1000 proposals and DETECTIONS_PER_IMAGE detections.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from instseg_deploy.class_names import default_class_names
from instseg_deploy.config import InstsegConfig, load_config
from instseg_deploy.config.types import ModelConfig
from instseg_deploy.image_io import read_image
from instseg_deploy.modeling import MaskRCNN, build_model
from instseg_deploy.modeling.layers import FrozenBatchNorm2d
from instseg_deploy.processing.preprocess import Batch, PreprocessParams, preprocess

BATCH_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


def standardize_batch_norms(model: MaskRCNN, batch: Batch) -> int:
    """Set each batch norm's running mean and variance to those of its input on ``batch`` (in place,
    in the order the forward pass reaches them, so each sees the already standardized layers before
    it); with the initialisers' weight 1 and bias 0 its output there has mean 0 and variance 1 per
    channel. A norm that sees fewer than two values per channel (e.g. in a head that got no boxes)
    keeps its statistics. Returns how many were set. ``model`` must be in eval mode (a training-mode
    BatchNorm would use and update batch statistics instead)."""
    if model.training:
        raise ValueError("standardize_batch_norms needs the model in eval mode")
    updated = []

    def take_input_statistics(norm: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]  # (N, C, H, W)
        if x.numel() < 2 * x.shape[1]:  # no variance to take
            return
        norm.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        norm.running_var.copy_((x.var(dim=(0, 2, 3)) - norm.eps).clamp(min=0))
        updated.append(norm)

    hooks = [m.register_forward_pre_hook(take_input_statistics) for m in model.modules() if isinstance(m, BATCH_NORMS)]
    try:
        with torch.inference_mode():
            model.inference(torch.from_numpy(batch.images), torch.from_numpy(batch.image_sizes))
    finally:
        for hook in hooks:
            hook.remove()
    return len(updated)


def initial_model(cfg: ModelConfig, seed: int = 0) -> MaskRCNN:
    """The architecture of ``cfg`` (eval mode) with weights from its initialisers under ``seed``; the
    caller's random state is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(cfg).eval()


def seeded_model(cfg: ModelConfig, batch: Batch, seed: int = 0) -> MaskRCNN:
    """:func:`initial_model` with its batch norms standardized on ``batch`` (preprocessed images, e.g. one
    generated image at the benchmark's size)."""
    model = initial_model(cfg, seed)
    standardize_batch_norms(model, batch)
    return model


def seeded_model_from_config(config: str | os.PathLike, image: str | os.PathLike,
                             seed: int = 0) -> tuple[MaskRCNN, InstsegConfig]:
    """(:func:`seeded_model` of a detectron2 config file, standardized on the image file ``image`` at the
    config's test size; the config, with default class names), ready to export."""
    cfg = load_config(config)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    batch = preprocess([read_image(image)[0]], PreprocessParams.from_model_config(cfg.model))
    return seeded_model(cfg.model, batch, seed), cfg
