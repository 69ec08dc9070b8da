"""Write checkpoints: our self-describing format, a superset of detectron2's trainer layout."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from instseg_deploy import __version__
from instseg_deploy.atomic import atomic_path
from instseg_deploy.checkpoint.loader import CLASS_NAMES_KEY, FORMAT_VERSION, INSTSEG_KEY


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config_tree: dict[str, Any],
                    class_names: tuple[str, ...], **trainer_state: Any) -> None:
    """Atomically write ``{"model", **trainer_state, "instseg": {config, class names, versions}}``.

    detectron2's DetectionCheckpointer reads the "model" entry and ignores the rest, and
    ``torch.load(weights_only=True)`` can read all of it (only tensors and plain containers).
    """
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **trainer_state,
        INSTSEG_KEY: {
            "format_version": FORMAT_VERSION,
            "instseg_version": __version__,
            "config": config_tree,
            CLASS_NAMES_KEY: list(class_names),
        },
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
