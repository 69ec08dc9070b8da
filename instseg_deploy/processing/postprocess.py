"""Network outputs -> Instances in original-image pixels (detectron2's detector_postprocess).

Shared by every backend: boxes are rescaled and clipped to the original image, empty boxes
dropped, and the 28x28 mask probabilities pasted at full resolution and thresholded.
"""

from __future__ import annotations

import numpy as np

from instseg_deploy.structures import Instances


def _bilinear_taps(coords: np.ndarray, lo: np.float32, hi: np.float32, size: int):
    """The two source indices and weights of sampling a ``size``-long signal spanning [lo, hi] at
    pixel centres ``coords``: grid_sample(align_corners=False) with zero padding (an index outside
    the signal gets weight 0)."""
    g = (coords - lo) / (hi - lo) * np.float32(2) - np.float32(1)
    src = ((g + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)
    left = np.floor(src)
    w_right = src - left
    w_left = np.float32(1) - w_right
    i0 = left.astype(np.int64)
    i1 = i0 + 1
    w_left = np.where((i0 >= 0) & (i0 < size), w_left, np.float32(0))
    w_right = np.where((i1 >= 0) & (i1 < size), w_right, np.float32(0))
    return np.clip(i0, 0, size - 1), np.clip(i1, 0, size - 1), w_left, w_right


def paste_mask(mask_probs: np.ndarray, box: np.ndarray, height: int, width: int, threshold: float = 0.5):
    """Paste one (M, M) probability map into its box; returns the bool mask region and its slices.

    Only the box (grown by one pixel) is computed: outside it the bilinear samples are all 0.
    Bilinear sampling is separable: interpolate the rows first (tiny), then gather two columns
    per output pixel, which is far cheaper than a dense matrix product on large boxes.
    """
    x0, y0, x1, y1 = (np.float32(v) for v in box)
    left = max(int(np.floor(x0)) - 1, 0)
    top = max(int(np.floor(y0)) - 1, 0)
    right = min(int(np.ceil(x1)) + 1, width)
    bottom = min(int(np.ceil(y1)) + 1, height)
    xs = np.arange(left, right, dtype=np.float32) + np.float32(0.5)
    ys = np.arange(top, bottom, dtype=np.float32) + np.float32(0.5)
    probs = mask_probs.astype(np.float32, copy=False)
    r0, r1, wr0, wr1 = _bilinear_taps(ys, y0, y1, probs.shape[0])
    c0, c1, wc0, wc1 = _bilinear_taps(xs, x0, x1, probs.shape[1])
    rows = probs[r0] * wr0[:, None] + probs[r1] * wr1[:, None]  # (h, M)
    region = rows[:, c0] * wc0 + rows[:, c1] * wc1  # (h, w)
    return region >= threshold, (slice(top, bottom), slice(left, right))


def paste_masks(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = 0.5) -> np.ndarray:
    """(N, M, M) probabilities + (N, 4) image-pixel boxes -> (N, height, width) bool masks."""
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for i, (probs, box) in enumerate(zip(mask_probs, boxes)):
        region, (rows, cols) = paste_mask(probs, box, height, width, threshold)
        masks[i, rows, cols] = region
    return masks


def postprocess(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, mask_probs: np.ndarray,
                input_size: tuple[int, int], original_size: tuple[int, int], score_thresh: float = 0.0,
                mask_threshold: float = 0.5, paste: bool = True,
                pasted_masks: np.ndarray | None = None) -> Instances:
    """One image's detections in network-input pixels -> :class:`Instances` in original pixels.

    boxes (N, 4), scores (N,), classes (N,), mask_probs (N, M, M); input_size is the resized
    (h, w) the network saw, original_size the (h, w) of the image given by the user.
    ``score_thresh`` filters on top of the model's own threshold (NMS is per class and keeps the
    highest scores, so filtering afterwards equals filtering before).
    """
    in_h, in_w = input_size
    out_h, out_w = (int(v) for v in original_size)
    boxes_net = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([out_w / in_w, out_h / in_h, out_w / in_w, out_h / in_h], dtype=np.float32)
    out_boxes = boxes_net * scale
    out_boxes[:, 0::2] = np.clip(out_boxes[:, 0::2], 0, out_w)
    out_boxes[:, 1::2] = np.clip(out_boxes[:, 1::2], 0, out_h)
    keep = ((out_boxes[:, 2] - out_boxes[:, 0]) > 0) & ((out_boxes[:, 3] - out_boxes[:, 1]) > 0)
    keep &= np.asarray(scores) >= score_thresh
    mask_probs = np.asarray(mask_probs, dtype=np.float32)[keep]
    out_boxes = out_boxes[keep]
    if pasted_masks is not None:
        masks = np.ascontiguousarray(pasted_masks[keep, :out_h, :out_w]).astype(bool, copy=False)
    else:
        masks = paste_masks(mask_probs, out_boxes, out_h, out_w, mask_threshold) if paste else None
    return Instances(
        image_size=(out_h, out_w),
        boxes=out_boxes,
        scores=np.asarray(scores, dtype=np.float32)[keep],
        classes=np.asarray(classes, dtype=np.int64)[keep],
        masks=masks,
        mask_probs=mask_probs,
        boxes_net=boxes_net[keep],
    )
