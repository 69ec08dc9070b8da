"""Ground truth of a training image and the 28x28 mask targets of its proposals.

Masks stay in their annotation form until a proposal needs them: polygons are rasterised
inside each proposal box (detectron2's PolygonMasks.crop_and_resize), bitmaps (decoded RLE)
are RoIAligned by the box and thresholded at 0.5 (detectron2's BitMasks.crop_and_resize).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import roi_align

# One instance's polygons: flat (2n,) float64 arrays x0, y0, x1, y1, ... in network-input pixels.
Polygons = list[np.ndarray]
# An instance's mask: its polygons, or an (h, w) uint8 bitmap of the whole (resized) image.
InstanceMask = Union[Polygons, np.ndarray]


@dataclass
class ImageTargets:
    """Ground truth of one image in network-input pixels (after resize and flip).

    boxes: (G, 4) float32 xyxy; classes: (G,) int64, contiguous 0..K-1; masks: G entries.
    """

    boxes: torch.Tensor
    classes: torch.Tensor
    masks: list[InstanceMask]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> ImageTargets:
        return ImageTargets(self.boxes.to(device), self.classes.to(device), self.masks)


def rasterize_polygons_within_box(polygons: Polygons, box: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool mask of ``polygons`` cropped to ``box`` (xyxy) and scaled to fill it."""
    width, height = box[2] - box[0], box[3] - box[1]
    ratio_w, ratio_h = size / max(width, 0.1), size / max(height, 0.1)
    scaled = []
    for p in polygons:
        p = p.astype(np.float64, copy=True)
        p[0::2] = (p[0::2] - box[0]) * ratio_w
        p[1::2] = (p[1::2] - box[1]) * ratio_h
        scaled.append(p)
    if not scaled:
        return np.zeros((size, size), dtype=bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(scaled, size, size))
    return mask_utils.decode(rle).astype(bool)


def crop_and_resize(masks: list[InstanceMask], gt_index: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Mask targets of R proposals of one image.

    gt_index: (R,) index into ``masks`` of each proposal's matched instance; boxes: (R, 4)
    proposal boxes. Returns (R, size, size) bool on ``boxes``' device.
    """
    out = torch.zeros((boxes.shape[0], size, size), dtype=torch.bool)
    boxes_cpu = boxes.detach().float().cpu()
    gt_list = gt_index.tolist()
    bitmap_rows = [r for r, g in enumerate(gt_list) if isinstance(masks[g], np.ndarray)]
    for r, g in enumerate(gt_list):
        if not isinstance(masks[g], np.ndarray):
            out[r] = torch.from_numpy(rasterize_polygons_within_box(masks[g], boxes_cpu[r].numpy(), size))
    if bitmap_rows:
        used = sorted({gt_list[r] for r in bitmap_rows})
        position = {g: i for i, g in enumerate(used)}
        bitmaps = torch.from_numpy(np.stack([masks[g] for g in used])).to(torch.float32)[:, None]  # (B, 1, h, w)
        rows = torch.tensor(bitmap_rows)
        rois = torch.cat([torch.tensor([[float(position[gt_list[r]])] for r in bitmap_rows]), boxes_cpu[rows]], dim=1)
        resized = roi_align(bitmaps, rois, (size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True)
        out[rows] = resized[:, 0] >= 0.5
    return out.to(boxes.device)
