"""Overlay drawing: masks, boxes and labels on the original image; ground truth drawn the same way."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from instseg_deploy.processing.masks import as_format
from instseg_deploy.structures import Instances

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
_TITLE_SCALE = 0.5
MIN_FONT_SCALE = 0.25  # below this Hershey glyphs are unreadable: a longer label is clipped instead
_PAD = 2  # pixels between a label's text and the edge of its background

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels; x1 and y1 exclusive


def class_color(index: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per class (golden-angle hue steps)."""
    hue = int((index * 137.508) % 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def fit_font_scale(text: str, width: int, scale: float = FONT_SCALE) -> float:
    """``scale``, or smaller so that ``text`` and its padding fit ``width`` pixels (never below the
    readable minimum, where a label too long is clipped instead).

    OpenCV rounds each glyph's advance to whole pixels, so the text's width is a step function of the
    scale, not proportional to it: shrink in proportion, then a little more, until it fits."""
    room = width - 2 * _PAD
    for _ in range(32):
        (tw, _), _ = cv2.getTextSize(text, FONT, scale, 1)
        if tw <= room or scale <= MIN_FONT_SCALE:
            break
        scale = max(MIN_FONT_SCALE, scale * min(room / tw, 0.98))
    return scale


def label_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height) of a label's background: the text, its descenders and the padding."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    return tw + 2 * _PAD, th + base + _PAD


def place_labels(boxes: np.ndarray, sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]) -> list[Rect]:
    """Where each box's label goes, in the given order (the best detection first, so it gets the best place).

    Above the box, else inside its top, else below it, always inside the image; a label that would overlap
    an earlier one slides down (then up) past them. Only when its column has no free place does it overlap.
    """
    height, width = image_size
    placed: list[Rect] = []
    for (x0, y0, _, y1), (w, h) in zip(np.asarray(boxes, np.float64).reshape(-1, 4), sizes):
        x = _clamp(int(round(x0)), w, width)
        starts = [_clamp(y, h, height) for y in (int(round(y0)) - h, int(round(y0)), int(round(y1)))]
        y = _free_y(x, w, h, starts, placed, height)
        placed.append((x, y, x + w, y + h))
    return placed


def _clamp(start: int, length: int, limit: int) -> int:
    return min(max(start, 0), max(limit - length, 0))


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _free_y(x: int, w: int, h: int, starts: list[int], placed: list[Rect], height: int) -> int:
    """The first start clear of ``placed``, else the first clear row reached by sliding from one; else starts[0]."""
    for y in starts:
        if not any(_overlap((x, y, x + w, y + h), r) for r in placed):
            return y
    for y in starts:
        for down in (True, False):
            found = _slide(x, w, h, y, placed, height, down)
            if found is not None:
                return found
    return starts[0]


def _slide(x: int, w: int, h: int, y: int, placed: list[Rect], height: int, down: bool) -> int | None:
    """Jump past every label in the way until none is; None when that leaves the image."""
    while True:
        hits = [r for r in placed if _overlap((x, y, x + w, y + h), r)]
        if not hits:
            return y
        y = max(r[3] for r in hits) if down else min(r[1] for r in hits) - h  # strictly moves: terminates
        if y < 0 or y + h > height:
            return None


def draw_instances(image_bgr: np.ndarray, instances: Instances, class_names: tuple[str, ...],
                   alpha: float = 0.5, show_scores: bool = True) -> np.ndarray:
    """A copy of ``image_bgr`` with every instance's mask, box and "name score" label (``show_scores``
    False: the name alone, as for ground truth); labels stay inside the image and off each other."""
    canvas = image_bgr.copy()
    order = np.argsort(instances.scores, kind="stable")  # low scores first, so the best ones are drawn on top
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
    for i in order:  # boxes over every mask
        x0, y0, x1, y1 = (int(round(v)) for v in instances.boxes[i])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), class_color(int(instances.classes[i])), 1, cv2.LINE_AA)
    _draw_labels(canvas, instances, class_names, order[::-1], show_scores)
    return canvas


def _draw_labels(canvas: np.ndarray, instances: Instances, class_names: tuple[str, ...], best_first: np.ndarray,
                 show_scores: bool) -> None:
    texts = [_label_text(instances, class_names, i, show_scores) for i in best_first]
    scales = [fit_font_scale(t, canvas.shape[1]) for t in texts]
    rects = place_labels(instances.boxes[best_first], [label_size(t, s) for t, s in zip(texts, scales)],
                         canvas.shape[:2])
    # Drawn worst first: where labels had to overlap, the best one stays readable.
    for i, text, scale, (x0, y0, x1, y1) in reversed(list(zip(best_first, texts, scales, rects))):
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), class_color(int(instances.classes[i])), -1)
        _, base = cv2.getTextSize(text, FONT, scale, 1)
        cv2.putText(canvas, text, (x0 + _PAD, y1 - base), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _label_text(instances: Instances, class_names: tuple[str, ...], i: int, show_scores: bool) -> str:
    cls = int(instances.classes[i])
    name = class_names[cls] if cls < len(class_names) else str(cls)
    return f"{name} {instances.scores[i]:.2f}" if show_scores else name


def ground_truth_instances(annotations: Sequence[dict], image_size: tuple[int, int],
                           category_ids: Sequence[int]) -> Instances:
    """One image's COCO annotations (polygons or RLE) as :class:`Instances` with dense masks and score 1, so
    that :func:`draw_instances` draws ground truth as it draws predictions. ``category_ids[k]``: the dataset id
    of contiguous class k; annotations of other categories are left out."""
    from pycocotools import mask as mask_utils

    height, width = image_size
    index = {cat_id: k for k, cat_id in enumerate(category_ids)}
    kept = [a for a in annotations if a.get("category_id") in index]
    if not kept:
        return Instances.empty(image_size)
    rles = [_annotation_rle(mask_utils, a["segmentation"], height, width) for a in kept]
    masks = np.transpose(mask_utils.decode(rles), (2, 0, 1)).astype(bool)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)], np.float32)
    return Instances(image_size, boxes, np.ones(len(kept), np.float32),
                     np.array([index[a["category_id"]] for a in kept], np.int64), masks)


def _annotation_rle(mask_utils, segmentation, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE, as COCO's annToRLE."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def titled_panels(panels: Sequence[tuple[str, np.ndarray]], gap: int = 6) -> np.ndarray:
    """Images side by side, each under a title bar, on a white background (for ground truth | prediction)."""
    (_, th), base = cv2.getTextSize("Ag", FONT, _TITLE_SCALE, 1)
    bar = th + base + 2 * _PAD + 2
    height = bar + max(image.shape[0] for _, image in panels)
    width = sum(image.shape[1] for _, image in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for title, image in panels:
        h, w = image.shape[:2]
        canvas[:bar, x:x + w] = (48, 48, 48)
        cv2.putText(canvas, title, (x + _PAD, bar - base - _PAD), FONT, fit_font_scale(title, w, _TITLE_SCALE),
                    (255, 255, 255), 1, cv2.LINE_AA)
        canvas[bar:bar + h, x:x + w] = image
        x += w + gap
    return canvas
