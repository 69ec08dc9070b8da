"""Initial weights of a training run: from scratch, a checkpoint, or an ImageNet ResNet.

- A detectron2 or instseg checkpoint (fine-tuning): every weight that fits is loaded. When
  the class count differs, the class-dependent layers (box classifier, box regressor, mask
  predictor) keep their fresh initialisation, and the messages say so.
- A torchvision ResNet state dict (``torchvision.models.resnet50().state_dict()`` saved with
  ``torch.save``): its names are mapped onto the backbone (conv1/bn1/layerN.M.convK/bnK/
  downsample -> stem.conv1, resN+1.M.convK(.norm), shortcut); FPN, RPN and heads start fresh.
- A backbone-only detectron2 file (names stem.*, res2.* ...): loaded under backbone.bottom_up.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from instseg_deploy.checkpoint import read_checkpoint
from instseg_deploy.config.types import ModelConfig
from instseg_deploy.errors import CheckpointError, ConfigError
from instseg_deploy.modeling import MaskRCNN

# Layers whose shape depends on the number of classes.
CLASS_DEPENDENT = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.",
                   "roi_heads.mask_head.predictor.")
_BACKBONE = "backbone.bottom_up."
_IGNORED = ("pixel_mean", "pixel_std")
_TORCHVISION_LAYER = re.compile(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(.+)$")
_C2_NAMES = ("conv1_w", "res2_0_branch2a_w", "res_conv1_bn_s")


def is_torchvision_resnet(state: dict[str, torch.Tensor]) -> bool:
    return "conv1.weight" in state and "layer1.0.conv1.weight" in state


def torchvision_to_detectron2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state dict to our (detectron2) backbone names; fc is dropped."""
    renamed = {}
    for name, value in state.items():
        if name.startswith("fc."):
            continue
        if name.startswith("conv1."):
            new = "stem.conv1." + name[len("conv1."):]
        elif name.startswith("bn1."):
            new = "stem.conv1.norm." + name[len("bn1."):]
        else:
            match = _TORCHVISION_LAYER.match(name)
            if match is None:
                raise CheckpointError(f"unexpected name {name!r} in a torchvision ResNet state dict")
            stage, block, part, leaf = match.groups()
            if part.startswith("conv"):
                layer = part
            elif part.startswith("bn"):
                layer = f"conv{part[2:]}.norm"
            else:
                layer = "shortcut" if part.endswith("0") else "shortcut.norm"
            new = f"res{int(stage) + 1}.{block}.{layer}.{leaf}"
        renamed[_BACKBONE + new] = value
    return renamed


def _check_torchvision_config(cfg: ModelConfig) -> list[str]:
    if cfg.resnet.depth >= 50 and cfg.resnet.stride_in_1x1:
        raise ConfigError("torchvision ResNets put the stride in the 3x3 conv: set MODEL.RESNETS.STRIDE_IN_1X1 False")
    notes = []
    if cfg.input.format != "RGB" or cfg.pixel_std == (1.0, 1.0, 1.0):
        notes.append("note: torchvision ResNets were trained on RGB input normalised with ImageNet's mean and std; "
                     "detectron2 uses INPUT.FORMAT RGB, MODEL.PIXEL_MEAN [123.675, 116.280, 103.530], "
                     "MODEL.PIXEL_STD [58.395, 57.120, 57.375] for them")
    return notes


def _shorten(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_initial_weights(model: MaskRCNN, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy every fitting weight of ``state`` into ``model``; returns messages for the user.

    Shape mismatches are errors, except in the class-dependent layers (re-initialised).
    """
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k not in _IGNORED and "anchor_generator.cell_anchors" not in k}
    loaded, reinitialised, mismatched = {}, [], []
    for name, value in state.items():
        if name not in expected:
            continue
        if value.shape != expected[name].shape:
            (reinitialised if name.startswith(CLASS_DEPENDENT) else mismatched).append(name)
            continue
        loaded[name] = value.to(expected[name].dtype)
    if mismatched:
        details = ", ".join(f"{n}: {tuple(state[n].shape)} vs {tuple(expected[n].shape)}" for n in mismatched[:3])
        raise CheckpointError(f"{source} does not fit the model ({len(mismatched)} shape mismatch(es): {details}); "
                              "is it for another architecture?")
    if not loaded:
        raise CheckpointError(f"no weight of {source} fits the model (are these Mask R-CNN / ResNet weights?)")
    model.load_state_dict(loaded, strict=False)
    messages = [f"initialised {len(loaded)} of {len(expected)} tensors from {source}"]
    if reinitialised:
        old = state.get("roi_heads.box_predictor.cls_score.weight")
        classes = f"{old.shape[0] - 1} classes, the model has {model.cfg.num_classes}" if old is not None else \
            "another class count"
        layers = sorted({n.rsplit(".", 1)[0] for n in reinitialised})
        messages.append(f"the checkpoint was trained for {classes}: re-initialised {', '.join(layers)} "
                        "(fine-tuning to the new classes)")
    unexpected = sorted(k for k in state if k not in expected and not k.endswith("num_batches_tracked"))
    if unexpected:
        messages.append(f"ignored {len(unexpected)} checkpoint tensor(s) the model does not have: "
                        f"{_shorten(unexpected)}")
    missing = sorted(k for k in expected if k not in loaded and k not in reinitialised
                     and not k.endswith("num_batches_tracked"))
    if missing:
        parts = sorted({k.split(".")[0] if not k.startswith("backbone.") else ".".join(k.split(".")[:2])
                        for k in missing})
        messages.append(f"{len(missing)} tensor(s) not in the checkpoint start from scratch ({', '.join(parts)})")
    return messages


def initialise(model: MaskRCNN, weights: str | os.PathLike | None) -> list[str]:
    """Apply ``weights`` (None or "scratch": detectron2's random init) and describe what happened."""
    if weights is None or str(weights) == "scratch":
        return ["initialised from scratch (detectron2's random init)"]
    path = Path(weights)
    ckpt = read_checkpoint(path)
    state = ckpt.state_dict
    if any(k in state for k in _C2_NAMES):
        raise CheckpointError(f"{path.name} uses Caffe2 (Detectron 1 / MSRA) names; use a detectron2 checkpoint or "
                              "a torchvision ResNet state dict instead")
    notes: list[str] = []
    if is_torchvision_resnet(state):
        notes = _check_torchvision_config(model.cfg)
        state = torchvision_to_detectron2(state)
        source = f"{path.name} (torchvision ResNet)"
    elif "stem.conv1.weight" in state:
        state = {_BACKBONE + k: v for k, v in state.items()}
        source = f"{path.name} (backbone)"
    else:
        source = path.name
    return load_initial_weights(model, state, source) + notes
