"""What a backend must provide: run one preprocessed batch, return flat raw detections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from instseg_deploy.processing.preprocess import Batch


@dataclass
class RawDetections:
    """Model outputs for a batch, in network-input pixels (see ``MaskRCNN.forward``).

    boxes (D, 4) float32, scores (D,) float32, classes (D,) int64, batch_idx (D,) int64,
    mask_probs (D, 28, 28) float32; masks (D, H, W) bool when the graph pasted them (each image's
    masks in the top-left corner of the canvas), else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    batch_idx: np.ndarray
    mask_probs: np.ndarray
    masks: np.ndarray | None = None


class Runner(Protocol):
    """A loaded model on one backend (torch, ort, trt)."""

    name: str
    max_batch: int | None  # a fixed-batch model takes at most this many images per run
    pad_to: tuple[int, int] | None  # a fixed-size model needs its input padded to this (H, W)

    def run(self, batch: Batch) -> RawDetections: ...
