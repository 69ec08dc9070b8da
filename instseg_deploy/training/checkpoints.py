"""Training checkpoints in detectron2's layout, and finding the one to resume from.

Files are named as detectron2's PeriodicCheckpointer names them (``model_0004999.pth`` after
iteration 4999, ``model_final.pth``), each written atomically, and ``last_checkpoint`` (a text
file with the latest file name) is updated after each, as detectron2's Checkpointer does.
A file holds ``{"model", "trainer": {"iteration", "optimizer", "scheduler", ...}, "iteration",
"instseg": {config, class names}}``: only tensors and plain containers, so it loads with
``torch.load(weights_only=True)``, with our ``read_checkpoint``, and in detectron2.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instseg_deploy.atomic import write_bytes
from instseg_deploy.checkpoint import read_checkpoint
from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.errors import CheckpointError

LAST_CHECKPOINT = "last_checkpoint"
FINAL_NAME = "model_final.pth"


def periodic_name(iteration: int) -> str:
    return f"model_{iteration:07d}.pth"


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, numpy, python) as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "python": [version, list(state), gauss]}


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))


def write_checkpoint(out_dir: Path, name: str, model: nn.Module, config_tree: dict, class_names: tuple[str, ...],
                     trainer_state: dict[str, Any]) -> Path:
    """Write ``out_dir/name`` atomically, then point ``last_checkpoint`` at it."""
    path = out_dir / name
    save_checkpoint(path, model, config_tree, class_names, trainer=trainer_state,
                    iteration=trainer_state["iteration"])
    write_bytes(out_dir / LAST_CHECKPOINT, name.encode("utf-8"))
    return path


def last_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint ``last_checkpoint`` names, None when the folder has no run."""
    marker = out_dir / LAST_CHECKPOINT
    if not marker.is_file():
        return None
    path = out_dir / marker.read_text(encoding="utf-8").strip()
    if not path.is_file():
        raise CheckpointError(f"{marker} names {path.name}, which does not exist; remove {marker} to start over")
    return path


def read_trainer_state(path: Path):
    """(Checkpoint, trainer state) of a checkpoint written by :func:`write_checkpoint`."""
    ckpt = read_checkpoint(path)
    state = ckpt.extra.get("trainer")
    if not isinstance(state, dict) or not {"iteration", "optimizer", "scheduler"} <= set(state):
        raise CheckpointError(f"{path} has no instseg trainer state to resume from (model weights only?); "
                              "use it with --init instead")
    return ckpt, state
