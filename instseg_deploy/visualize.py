"""Overlay drawing: masks, boxes and labels on the original image."""

from __future__ import annotations

import cv2
import numpy as np

from instseg_deploy.processing.masks import as_format
from instseg_deploy.structures import Instances


def class_color(index: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per class (golden-angle hue steps)."""
    hue = int((index * 137.508) % 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_instances(image_bgr: np.ndarray, instances: Instances, class_names: tuple[str, ...],
                   alpha: float = 0.5) -> np.ndarray:
    """A copy of ``image_bgr`` with every instance's mask, box and "name score" label."""
    canvas = image_bgr.copy()
    order = np.argsort(instances.scores)  # low scores first, so the best ones are drawn on top
    # Each mask over its own region: drawing never allocates a full-image mask per instance.
    cropped = as_format(instances, "cropped") if instances.has_masks else None
    for i in order:
        color = class_color(int(instances.classes[i]))
        if cropped is not None:
            (top, left), mask = cropped[i].offset, cropped[i].mask
            view = canvas[top:top + mask.shape[0], left:left + mask.shape[1]]
            view[mask] = (view[mask] * (1 - alpha) + np.array(color) * alpha).astype(np.uint8)
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                           offset=(left, top))
            cv2.drawContours(canvas, contours, -1, color, 1, cv2.LINE_AA)
    for i in order:
        color = class_color(int(instances.classes[i]))
        x0, y0, x1, y1 = (int(round(v)) for v in instances.boxes[i])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, 1, cv2.LINE_AA)
        cls = int(instances.classes[i])
        name = class_names[cls] if cls < len(class_names) else str(cls)
        label = f"{name} {instances.scores[i]:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(y0, th + base)
        cv2.rectangle(canvas, (x0, ty - th - base), (x0 + tw, ty), color, -1)
        cv2.putText(canvas, label, (x0, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
