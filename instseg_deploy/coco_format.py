"""Instances <-> COCO results format (bbox xywh, RLE masks)."""

from __future__ import annotations

import numpy as np

from instseg_deploy.processing.masks import as_format
from instseg_deploy.structures import Instances


def instances_to_coco(instances: Instances, image_id: int, category_ids: list[int] | None = None,
                      with_masks: bool = True) -> list[dict]:
    """COCO results entries for one image. ``category_ids[k]`` is the dataset id of class k
    (default k + 1). Masks of any format are written as the same RLE (none: no segmentation)."""
    boxes = instances.boxes.astype(np.float64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    rles = as_format(instances, "rle") if with_masks and instances.has_masks else None
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
