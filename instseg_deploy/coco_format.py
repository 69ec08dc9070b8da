"""Instances <-> COCO results format (bbox xywh, RLE masks)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from instseg_deploy.structures import Instances


def encode_masks(masks: np.ndarray) -> list[dict]:
    """(N, H, W) bool -> COCO compressed RLEs with ``counts`` as str (JSON-serialisable)."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def instances_to_coco(instances: Instances, image_id: int, category_ids: list[int] | None = None,
                      with_masks: bool = True) -> list[dict]:
    """COCO results entries for one image. ``category_ids[k]`` is the dataset id of class k
    (default k + 1)."""
    boxes = instances.boxes.astype(np.float64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    rles = encode_masks(instances.masks) if with_masks and instances.masks is not None else None
    results = []
    for k in range(len(instances)):
        cls = int(instances.classes[k])
        entry = {
            "image_id": int(image_id),
            "category_id": int(category_ids[cls]) if category_ids is not None else cls + 1,
            "bbox": [round(float(v), 3) for v in xywh[k]],
            "score": round(float(instances.scores[k]), 6),
        }
        if rles is not None:
            entry["segmentation"] = rles[k]
        results.append(entry)
    return results
