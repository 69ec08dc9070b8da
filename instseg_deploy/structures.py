"""The one result type every backend returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Instances:
    """Detections of one image, in original-image pixels.

    boxes: (N, 4) float32 xyxy; scores: (N,) float32; classes: (N,) int64, 0-based contiguous;
    masks: (N, H, W) bool full-resolution masks (None when pasting was skipped);
    mask_probs: (N, 28, 28) float32 sigmoid probabilities of each instance's class, defined on
    ``boxes_net`` (N, 4), the boxes in network-input pixels (before rescaling to the image).
    Instances are sorted by decreasing score.
    """

    image_size: tuple[int, int]  # (height, width) of the original image
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray | None = None
    mask_probs: np.ndarray | None = None
    boxes_net: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, index: np.ndarray) -> Instances:
        """A subset (boolean mask or integer index array), keeping every field aligned."""
        def pick(a):
            return None if a is None else a[index]
        return Instances(self.image_size, self.boxes[index], self.scores[index], self.classes[index],
                         pick(self.masks), pick(self.mask_probs), pick(self.boxes_net))

    @staticmethod
    def empty(image_size: tuple[int, int], mask_resolution: int = 28) -> Instances:
        h, w = image_size
        return Instances(image_size, np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                         np.zeros((0,), np.int64), np.zeros((0, h, w), bool),
                         np.zeros((0, mask_resolution, mask_resolution), np.float32), np.zeros((0, 4), np.float32))
