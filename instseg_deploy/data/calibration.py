"""Calibration images: a folder sampled deterministically, read through the shared preprocessing.

Used by post-training quantization (``quantize``) and by TensorRT's own INT8 calibration
(``export.trt``), so it sits below both. The reader feeds an exported model exactly what
inference feeds it (``processing.preprocess`` with the model's preprocessing), one image per
run, so the activation ranges are measured on the distribution the model will see. Unreadable
images are reported through a callback and skipped; a set with no usable image is refused.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from instseg_deploy.errors import ImageError, InstsegError
from instseg_deploy.image_io import IMAGE_SUFFIXES, read_image
from instseg_deploy.processing.batching import fill_batch
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess

SAMPLE_SEED = 0  # the same folder and --num-images always give the same calibration subset


class CalibrationError(InstsegError):
    """The calibration set cannot be used (empty, missing, nothing readable)."""


def calibration_images(images: str | os.PathLike | None = None, coco_root: str | os.PathLike | None = None,
                       num_images: int | None = None) -> list[Path]:
    """The image files to calibrate on, sorted; a deterministic random subset of ``num_images``.

    ``coco_root``: the COCO 2017 layout; train2017/ when present (calibrating on the split that
    is evaluated inflates the numbers slightly), else val2017/.
    """
    if (images is None) == (coco_root is None):
        raise CalibrationError("give the calibration images as --images DIR or --coco-root DIR (one of them)")
    if coco_root is not None:
        root = Path(coco_root)
        folder = next((root / s for s in ("train2017", "val2017") if (root / s).is_dir()), None)
        if folder is None:
            raise CalibrationError(f"--coco-root {root} has neither train2017/ nor val2017/")
    else:
        folder = Path(images)
        if not folder.is_dir():
            raise CalibrationError(f"calibration image folder not found: {folder}")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise CalibrationError(f"the calibration set is empty: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if num_images is not None:
        if num_images < 1:
            raise CalibrationError(f"--num-images must be at least 1, got {num_images}")
        if num_images < len(found):
            found = sorted(random.Random(SAMPLE_SEED).sample(found, num_images))
    return found


class ImageCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over image files.

    ``get_next()`` returns the feeds of one image: images (1, 3, H, W) float32 padded with the
    pixel mean, image_sizes (1, 2) int64 (and original_sizes (1, 2) int64 for graphs that paste
    masks), or None at the end. ``on_image(done, total)`` is called after each file (used or
    skipped), ``on_skip(path, reason)`` for each unreadable one.
    """

    def __init__(self, paths: list[Path], params: PreprocessParams, input_names: list[str],
                 pad_to: tuple[int, int] | None = None, fixed_batch: int | None = None,
                 on_image: Callable[[int, int], None] | None = None,
                 on_skip: Callable[[Path, str], None] | None = None):
        self.paths = list(paths)
        self.params = params
        self.input_names = list(input_names)
        self.pad_to = pad_to
        self.fixed_batch = fixed_batch
        self.on_image = on_image
        self.on_skip = on_skip
        self.position = 0
        self.used = 0
        self.skipped: list[tuple[Path, str]] = []

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feeds = self.get_next()
        if feeds is None:
            raise StopIteration
        return feeds

    def rewind(self) -> None:
        self.position, self.used, self.skipped = 0, 0, []

    def get_next(self) -> dict[str, np.ndarray] | None:
        while self.position < len(self.paths):
            path = self.paths[self.position]
            self.position += 1
            try:
                image, _ = read_image(path)
                feeds = self._feeds(image)
            except (ImageError, InstsegError) as e:
                self.skipped.append((path, str(e)))
                if self.on_skip is not None:
                    self.on_skip(path, str(e))
                self._report()
                continue
            self.used += 1
            self._report()
            return feeds
        if self.used == 0:
            raise CalibrationError(f"none of the {len(self.paths)} calibration images could be read "
                                   f"(first problem: {self.skipped[0][1] if self.skipped else 'none'})")
        return None

    def _report(self) -> None:
        if self.on_image is not None:
            self.on_image(self.position, len(self.paths))

    def _feeds(self, image: np.ndarray) -> dict[str, np.ndarray]:
        batch = preprocess([image], self.params, pad_to=self.pad_to)
        # A fixed-batch graph: repeat the image (its statistics, not blank slots, are wanted).
        feeds, _ = fill_batch(batch, self.params.pixel_mean, self.input_names, batch_size=self.fixed_batch or 0,
                              repeat=True)
        return feeds
