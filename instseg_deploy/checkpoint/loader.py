"""Read weights from detectron2 (.pkl / .pth) and our own checkpoints, safely and by name."""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instseg_deploy.checkpoint.safe_pickle import (
    NUMERIC_KINDS,
    check_pickle_stream,
    describe,
    reason,
    safe_load_pickle,
    walk_leaves,
)
from instseg_deploy.errors import CheckpointError

# Our own format: detectron2's {"model": state_dict} plus an "instseg" block that makes the
# file self-describing (config and class names travel with the weights).
INSTSEG_KEY = "instseg"
FORMAT_VERSION = 1
# The class names' entry: inside our "instseg" block, or at the top level of a detectron2 checkpoint
# (beside its "model"; detectron2 ignores it) -- how the bundled example model carries its names.
CLASS_NAMES_KEY = "class_names"

# Keys that are derived from the config, never learned; older checkpoints may carry them.
_IGNORED_KEYS = ("pixel_mean", "pixel_std")
_IGNORED_SUBSTRINGS = ("anchor_generator.cell_anchors",)

# torch.save stores every entry uncompressed; a re-zipped (deflated) checkpoint shrinks by a few percent. A zip
# bomb declares ~1000x its size, which torch would allocate before reading.
_ZIP_RATIO = 4
_INT_DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
               *(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n))}


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    kind: str  # "detectron2-pkl", "detectron2-pth" or "instseg"
    extra: dict[str, Any] = field(default_factory=dict)  # trainer state, instseg metadata, ...


def _to_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value  # checked by _check_torch_leaf
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in NUMERIC_KINDS:  # safe_load_pickle makes no others; never copy pointers
            raise CheckpointError(f"weight {describe(name)} is an array of {value.dtype}, not numbers")
        # Native byte order, C order, writable: what torch.from_numpy takes. No copy when it already is.
        array = value.astype(value.dtype.newbyteorder("="), order="C", copy=False)
        if not array.flags.writeable:
            array = array.copy()
        try:
            return torch.from_numpy(array)
        except TypeError:
            raise CheckpointError(f"weight {describe(name)} is an array of {value.dtype}, "
                                  "which PyTorch cannot hold") from None
    if isinstance(value, (int, float, np.number, np.bool_)):
        try:
            return torch.tensor(value)
        except (TypeError, RuntimeError, OverflowError) as e:
            raise CheckpointError(f"weight {describe(name)} is the number {describe(value)}, "
                                  f"which PyTorch cannot hold ({type(e).__name__})") from None
    raise CheckpointError(f"weight {describe(name)} is a {type(value).__name__}, not an array")


def _check_zip(path: Path) -> int:
    """Refuse a zip whose contents would make torch allocate far more than the file holds, or whose pickles
    would make torch's unpickler recurse or flood; returns the declared size of the contents."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if not entries or min(e.header_offset for e in entries) != 0:
                # Data before the first entry: Python's zipfile and torch's reader could then see different
                # files in one archive, and we must check what torch reads. torch.save's zips start at byte 0.
                raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (the zip does not start with "
                                      "its first entry)")
            total = sum(e.file_size for e in entries)
            if total > _ZIP_RATIO * size:
                raise CheckpointError(f"{path}: refusing to load: the zip declares {total:,} bytes of contents in a "
                                      f"{size:,}-byte file (a zip bomb?); torch.save stores weights uncompressed")
            for entry in entries:
                if entry.filename.endswith(".pkl"):
                    with archive.open(entry) as member:
                        data = member.read(entry.file_size + 1)
                    if len(data) > entry.file_size:
                        raise CheckpointError(f"{path}: refusing to load: {describe(entry.filename)} is larger "
                                              "than the zip declares")
                    check_pickle_stream(data)
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None
    except Exception as e:  # zipfile's many errors on a damaged or hostile archive
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason(e)})") from None
    return total


def _torch_reason(e: BaseException) -> str:
    """The one useful line of torch's messages ("Unsupported global: GLOBAL posix.system ..."), without the
    advice to load with weights_only=False and without terminal bold codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    line = found.group(1).split(" Please use")[0] if found else (text.strip().splitlines() or [""])[0]
    return reason(e, line)


def _tensor_problem(t: torch.Tensor, limit: int) -> str | None:
    if t.is_quantized:
        return f"a quantized tensor ({t.dtype})"
    if t.is_nested:
        return "a nested tensor"
    if t.layout != torch.strided:
        return f"a {str(t.layout).removeprefix('torch.')} tensor"
    if t.device.type == "meta":
        return "a meta tensor (a shape without data)"
    if t.device.type != "cpu":
        return f"a tensor on {t.device}"
    if not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype in _INT_DTYPES):
        return f"a tensor of {t.dtype}, not numbers"
    nbytes = t.numel() * t.element_size()
    if nbytes > limit:  # e.g. one element expanded (stride 0) to a huge shape
        return f"a {tuple(t.shape)} tensor of {nbytes:,} bytes, more than the file holds ({limit:,} bytes)"
    return None


def _check_torch_leaf(where: tuple[str, ...], leaf: Any, limit: int) -> Any:
    problem = None
    if isinstance(leaf, torch.Tensor):
        problem = _tensor_problem(leaf, limit)
    elif isinstance(leaf, (torch.UntypedStorage, torch.TypedStorage)) and leaf.device.type != "cpu":
        problem = f"a storage on {leaf.device}"
    if problem:
        raise CheckpointError(f"refusing to load: {'/'.join(where) or 'the file'} is {problem}; weights are dense "
                              "CPU tensors of numbers")
    return leaf


def _torch_load(path: Path) -> Any:
    limit = _check_zip(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notices about sparse, quantized, TypedStorage: not the user's
            # weights_only: torch's own restricted unpickler (tensors, containers, primitives).
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refusing to load, it holds more than weights ({_torch_reason(e)})") from None
    except Exception as e:  # whatever a damaged file makes torch.load raise is one error line
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_torch_reason(e)})") from None
    try:
        return walk_leaves(obj, lambda where, leaf: _check_torch_leaf(where, leaf, limit))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file without executing code from it.

    Anything but plain containers and dense numeric arrays/tensors, and any file that would make us allocate
    far more than its size, recurse deeply or crash, is refused with one ``CheckpointError`` line.
    """
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
            try:
                obj = safe_load_pickle(f)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from None
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
            raise CheckpointError(f"{path}: weight names must be strings, found {describe(name)}")
        try:
            state[name] = _to_tensor(name, value)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
    return Checkpoint(state_dict=state, kind=kind, extra=extra)


def checkpoint_class_names(checkpoint: Checkpoint) -> tuple[str, ...] | None:
    """The class names the checkpoint carries, None when it carries none (or not a list of strings)."""
    holder = checkpoint.extra.get(INSTSEG_KEY, {}) if checkpoint.kind == "instseg" else checkpoint.extra
    names = holder.get(CLASS_NAMES_KEY) if isinstance(holder, dict) else None
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


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
