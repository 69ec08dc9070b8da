"""The one result type every backend returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

# How ``Instances.masks`` holds the masks (processing.masks makes each from the 28x28 probabilities):
# "dense" (N, H, W) bool; "rle" a list of COCO compressed RLEs ({"size": [H, W], "counts": str});
# "cropped" a list of CroppedMask; "none" no masks (None). Every format holds exactly the same pixels.
MASK_FORMATS = ("dense", "rle", "cropped", "none")


@dataclass(frozen=True)
class CroppedMask:
    """One instance's mask over the region it can cover: ``mask`` (h, w) bool whose top-left pixel is
    image pixel ``offset`` (row, column); every pixel outside the region is off."""

    offset: tuple[int, int]
    mask: np.ndarray


Masks = Union[np.ndarray, list[dict], list[CroppedMask], None]


@dataclass
class Instances:
    """Detections of one image, in original-image pixels.

    boxes: (N, 4) float32 xyxy; scores: (N,) float32; classes: (N,) int64, 0-based contiguous;
    masks: in ``mask_format`` (see MASK_FORMATS): (N, H, W) bool full-resolution masks for "dense";
    mask_probs: (N, 28, 28) float32 sigmoid probabilities of each instance's class, defined on
    ``boxes_net`` (N, 4), the boxes in network-input pixels (before rescaling to the image); every
    mask format is made from these, so they are always kept.
    Instances are sorted by decreasing score.
    """

    image_size: tuple[int, int]  # (height, width) of the original image
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: Masks = None
    mask_probs: np.ndarray | None = None
    boxes_net: np.ndarray | None = None
    mask_format: str = "dense"

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def has_masks(self) -> bool:
        return self.mask_format != "none" and self.masks is not None

    def select(self, index: np.ndarray) -> Instances:
        """A subset (boolean mask or integer index array), keeping every field aligned."""
        def pick(a):
            return None if a is None else a[index]

        masks = self.masks
        if isinstance(masks, list):  # rle / cropped: one entry per instance
            masks = [masks[i] for i in np.arange(len(self))[index]]
        else:
            masks = pick(masks)
        return Instances(self.image_size, self.boxes[index], self.scores[index], self.classes[index],
                         masks, pick(self.mask_probs), pick(self.boxes_net), self.mask_format)

    @staticmethod
    def empty(image_size: tuple[int, int], mask_resolution: int = 28, mask_format: str = "dense") -> Instances:
        h, w = image_size
        masks = {"dense": np.zeros((0, h, w), bool), "none": None}.get(mask_format, [])
        return Instances(image_size, np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                         np.zeros((0,), np.int64), masks,
                         np.zeros((0, mask_resolution, mask_resolution), np.float32), np.zeros((0, 4), np.float32),
                         mask_format)
