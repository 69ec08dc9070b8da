"""Read weights from detectron2 (.pkl / .pth) and our own checkpoints, safely and by name."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instseg_deploy.checkpoint.safe_pickle import safe_load_pickle
from instseg_deploy.errors import CheckpointError

# Our own format: detectron2's {"model": state_dict} plus an "instseg" block that makes the
# file self-describing (config and class names travel with the weights).
INSTSEG_KEY = "instseg"
FORMAT_VERSION = 1

# Keys that are derived from the config, never learned; older checkpoints may carry them.
_IGNORED_KEYS = ("pixel_mean", "pixel_std")
_IGNORED_SUBSTRINGS = ("anchor_generator.cell_anchors",)


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    kind: str  # "detectron2-pkl", "detectron2-pth" or "instseg"
    extra: dict[str, Any] = field(default_factory=dict)  # trainer state, instseg metadata, ...


def _to_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True, order="C"))
    if isinstance(value, (int, float, np.number)):
        return torch.tensor(value)
    raise CheckpointError(f"weight {name!r} is a {type(value).__name__}, not an array")


def _torch_load(path: Path) -> Any:
    try:
        # weights_only: torch's own restricted unpickler (tensors, containers, primitives).
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refusing to load, it holds more than weights ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0]})") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if zipfile.is_zipfile(path):
        obj = _torch_load(path)
        kind = "detectron2-pth"
    else:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if not head.startswith(b"\x80"):
                raise CheckpointError(f"{path}: not a checkpoint (neither a PyTorch zip file nor a pickle)")
            obj = safe_load_pickle(f)
        kind = "detectron2-pkl"
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    if "blobs" in obj and "model" not in obj:
        raise CheckpointError(f"{path}: a Caffe2-format (Detectron1 'blobs') file; "
                              "convert it to detectron2 names first")
    model = obj.get("model", obj)
    if not isinstance(model, dict) or not model:
        raise CheckpointError(f"{path}: no model weights found (expected a 'model' dict)")
    extra = {k: v for k, v in obj.items() if k != "model"} if "model" in obj else {}
    if INSTSEG_KEY in extra:
        kind = "instseg"
    state = {}
    for name, value in model.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: weight names must be strings, found {name!r}")
        state[name] = _to_tensor(name, value)
    return Checkpoint(state_dict=state, kind=kind, extra=extra)


def load_weights(model: nn.Module, checkpoint: Checkpoint, source: str = "weights") -> None:
    """Copy weights into ``model`` by name; any missing, unexpected or misshapen key is an error."""
    expected = model.state_dict()
    given = {k: v for k, v in checkpoint.state_dict.items()
             if k not in _IGNORED_KEYS and not any(s in k for s in _IGNORED_SUBSTRINGS)}
    # BN and FrozenBN differ only by this counter; either checkpoint fits either model.
    optional = [k for k in expected if k.endswith("num_batches_tracked")]
    missing = sorted(k for k in expected if k not in given and k not in optional)
    unexpected = sorted(k for k in given if k not in expected and not k.endswith("num_batches_tracked"))
    mismatched = [(k, tuple(given[k].shape), tuple(expected[k].shape))
                  for k in expected if k in given and given[k].shape != expected[k].shape]
    if mismatched:
        raise CheckpointError(f"{source} do not fit the model: " + _describe_mismatch(mismatched))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_shorten(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_shorten(unexpected)}")
        raise CheckpointError(f"{source} do not fit the model: " + "; ".join(parts))
    to_load = {k: v.to(expected[k].dtype) for k, v in given.items() if k in expected}
    model.load_state_dict(to_load, strict=False)


def _shorten(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _describe_mismatch(mismatched: list[tuple[str, tuple, tuple]]) -> str:
    for name, got, want in mismatched:
        if name.endswith("cls_score.weight"):
            return (f"the weights were trained for {got[0] - 1} classes but the config has "
                    f"MODEL.ROI_HEADS.NUM_CLASSES={want[0] - 1} ({name}: {got} vs {want})")
    details = ", ".join(f"{n}: {g} vs {w}" for n, g, w in mismatched[:3])
    more = f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
    return f"shape mismatch (checkpoint vs model) for {details}{more}"
