"""Calibration data for post-training quantization: real images through the shared preprocessing.

The calibration set itself (folder sampling, the reader, :class:`CalibrationError`) is
``data.calibration``, shared with TensorRT's calibration; here is what quantization adds: a
digest that identifies a set for the quantization cache, and a reader shaped by a model's metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instseg_deploy.data.calibration import ImageCalibrationReader


def images_digest(paths: list[Path]) -> str:
    """Identifies a calibration set by file names and sizes (cheap; a changed file changes it)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


def reader_for_model(meta: dict[str, Any], input_names: list[str], paths: list[Path],
                     on_image: Callable[[int, int], None] | None = None,
                     on_skip: Callable[[Path, str], None] | None = None) -> ImageCalibrationReader:
    """A reader that prepares images the way the model's metadata says (size, batch, preprocessing)."""
    from instseg_deploy.model_file.metadata import preprocess_params

    size = meta.get("size", "dynamic")
    batch = meta.get("batch", "dynamic")
    return ImageCalibrationReader(paths, preprocess_params(meta), input_names,
                                  pad_to=tuple(size) if isinstance(size, list) else None,
                                  fixed_batch=batch if isinstance(batch, int) else None,
                                  on_image=on_image, on_skip=on_skip)
