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
    mask_probs (D, 28, 28) float32.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    batch_idx: np.ndarray
    mask_probs: np.ndarray


class Runner(Protocol):
    """A loaded model on one backend (torch, ort, trt)."""

    name: str

    def run(self, batch: Batch) -> RawDetections: ...
