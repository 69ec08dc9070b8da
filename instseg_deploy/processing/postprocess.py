"""Network outputs -> Instances in original-image pixels (detectron2's detector_postprocess).

Shared by every backend: boxes are rescaled and clipped to the original image, empty boxes
dropped, and the 28x28 mask probabilities pasted and thresholded into the requested mask format
(processing.masks).
"""

from __future__ import annotations

import numpy as np

from instseg_deploy.processing.masks import make_masks, masks_from_dense
from instseg_deploy.structures import Instances


def postprocess(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, mask_probs: np.ndarray,
                input_size: tuple[int, int], original_size: tuple[int, int], score_thresh: float = 0.0,
                mask_threshold: float = 0.5, mask_format: str = "dense",
                pasted_masks: np.ndarray | None = None) -> Instances:
    """One image's detections in network-input pixels -> :class:`Instances` in original pixels.

    boxes (N, 4), scores (N,), classes (N,), mask_probs (N, M, M); input_size is the resized
    (h, w) the network saw, original_size the (h, w) of the image given by the user.
    ``score_thresh`` filters on top of the model's own threshold (NMS is per class and keeps the
    highest scores, so filtering afterwards equals filtering before). ``pasted_masks`` (N, H', W')
    bool: masks a graph pasted itself, each image's in the top-left (original h, w) of the canvas.
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
        dense = np.ascontiguousarray(pasted_masks[keep, :out_h, :out_w]).astype(bool, copy=False)
        masks = masks_from_dense(dense, out_boxes, mask_format)
    else:
        masks = make_masks(mask_probs, out_boxes, out_h, out_w, mask_format, mask_threshold)
    return Instances(
        image_size=(out_h, out_w),
        boxes=out_boxes,
        scores=np.asarray(scores, dtype=np.float32)[keep],
        classes=np.asarray(classes, dtype=np.int64)[keep],
        masks=masks,
        mask_probs=mask_probs,
        boxes_net=boxes_net[keep],
        mask_format=mask_format,
    )
