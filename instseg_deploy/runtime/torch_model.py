"""Build a ready model from files: a detectron2 config and a checkpoint (ours or detectron2's)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from instseg_deploy.checkpoint import load_weights, read_checkpoint
from instseg_deploy.checkpoint.loader import INSTSEG_KEY, checkpoint_class_names
from instseg_deploy.class_names import resolve_class_names
from instseg_deploy.config import InstsegConfig, config_from_tree, load_config
from instseg_deploy.errors import ConfigError
from instseg_deploy.modeling import MaskRCNN, build_model


def _with_score_thresh(cfg: InstsegConfig, score_thresh: float | None) -> InstsegConfig:
    """Lower the model's own score threshold when the user asks for more detections."""
    if score_thresh is None or score_thresh >= cfg.model.roi_heads.score_thresh_test:
        return cfg
    roi = dataclasses.replace(cfg.model.roi_heads, score_thresh_test=score_thresh)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, roi_heads=roi))


def load_model(config: str | os.PathLike | None, weights: str | os.PathLike | None,
               score_thresh: float | None = None, overrides: Sequence[str] = (),
               class_names: Sequence[str] | None = None) -> tuple[MaskRCNN, InstsegConfig]:
    """Read the checkpoint safely, build the model from the config and load the weights by name.

    ``config`` may be None for our own checkpoints, which carry their config. ``overrides``:
    detectron2's ``KEY VALUE ...`` list, applied on top of the config. ``weights`` None: the
    config's MODEL.WEIGHTS (from the file or an override), as detectron2 does. ``class_names``:
    the user's names, over those the checkpoint carries (class_names.resolve_class_names).
    """
    cfg = load_config(config, overrides) if config is not None else None
    if weights is None:
        weights = _weights_from_config(cfg)
    ckpt = read_checkpoint(weights)
    meta = ckpt.extra.get(INSTSEG_KEY, {}) if ckpt.kind == "instseg" else {}
    if cfg is None:
        if "config" not in meta:
            raise ConfigError(f"{weights} is a detectron2 checkpoint without a config: pass --config")
        cfg = config_from_tree(meta["config"], source=f"{weights} (embedded)", overrides=overrides)
    cfg.class_names = resolve_class_names(cfg.model.num_classes, given=class_names,
                                          carried=checkpoint_class_names(ckpt))
    model = build_model(_with_score_thresh(cfg, score_thresh).model)
    load_weights(model, ckpt, source=f"weights {Path(weights).name}")
    return model, cfg


def _weights_from_config(cfg: InstsegConfig | None) -> str:
    """MODEL.WEIGHTS when no --weights was given (a local file: nothing is downloaded)."""
    if cfg is None or not cfg.weights:
        raise ConfigError("--weights is required (or MODEL.WEIGHTS in the config, or as a MODEL.WEIGHTS PATH "
                          "override)")
    if "://" in cfg.weights:
        raise ConfigError(f"MODEL.WEIGHTS is {cfg.weights}: a URL (nothing is downloaded here); download it "
                          "and pass --weights FILE or MODEL.WEIGHTS FILE")
    return cfg.weights
