"""Box arithmetic shared by the RPN and the ROI heads (all boxes are xyxy)."""

from __future__ import annotations

import math

import torch
from torchvision.ops import boxes as tv_boxes

# detectron2's cap on exp(dw): never grow a box by more than 1000/16 in one step.
SCALE_CLAMP = math.log(1000.0 / 16)


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """Decode (dx, dy, dw, dh) deltas against reference boxes.

    deltas: (R, 4*k); boxes: (R, 4). Returns (R, 4*k), the same layout as ``deltas``.
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=SCALE_CLAMP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=SCALE_CLAMP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    pred = torch.stack(
        (pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h, pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h),
        dim=-1,
    )
    return pred.reshape(deltas.shape)


def get_deltas(src: torch.Tensor, dst: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """Deltas that turn ``src`` boxes into ``dst`` boxes (the inverse of :func:`apply_deltas`)."""
    src_w = src[:, 2] - src[:, 0]
    src_h = src[:, 3] - src[:, 1]
    src_x = src[:, 0] + 0.5 * src_w
    src_y = src[:, 1] + 0.5 * src_h
    dst_w = dst[:, 2] - dst[:, 0]
    dst_h = dst[:, 3] - dst[:, 1]
    dst_x = dst[:, 0] + 0.5 * dst_w
    dst_y = dst[:, 1] + 0.5 * dst_h
    wx, wy, ww, wh = weights
    return torch.stack(
        (wx * (dst_x - src_x) / src_w, wy * (dst_y - src_y) / src_h,
         ww * torch.log(dst_w / src_w), wh * torch.log(dst_h / src_h)),
        dim=1,
    )


def clip_boxes(boxes: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Clip (..., 4) boxes to [0, w] x [0, h]; ``heights``/``widths`` broadcast against boxes[..., 0]."""
    heights = heights.to(boxes.dtype)
    widths = widths.to(boxes.dtype)
    zero = torch.zeros_like(boxes[..., 0])
    x1 = torch.minimum(torch.maximum(boxes[..., 0], zero), widths)
    y1 = torch.minimum(torch.maximum(boxes[..., 1], zero), heights)
    x2 = torch.minimum(torch.maximum(boxes[..., 2], zero), widths)
    y2 = torch.minimum(torch.maximum(boxes[..., 3], zero), heights)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Boolean mask of boxes wider and taller than ``threshold``."""
    return ((boxes[..., 2] - boxes[..., 0]) > threshold) & ((boxes[..., 3] - boxes[..., 1]) > threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each group id; returns kept indices sorted by decreasing score.

    Groups let one call cover every (image, level) or (image, class) pair of a batch, so
    the graph has no per-image Python loop.
    """
    boxes = boxes.float()
    if torch.jit.is_tracing():
        # torchvision's version returns early on an empty input, which a trace would bake in
        # for good. Offsetting each group to its own region keeps one NMS op without that branch.
        max_coordinate = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
        offsets = groups.to(boxes) * (max_coordinate + 1)
        return tv_boxes.nms(boxes + offsets[:, None], scores, iou_threshold)
    return tv_boxes.batched_nms(boxes, scores, groups, iou_threshold)


def rank_within_group(groups: torch.Tensor, num_groups: torch.Tensor | int) -> torch.Tensor:
    """0-based position of each element among the earlier elements of its group.

    groups: (K,) int64 in [0, num_groups). Applied to score-sorted NMS output, it gives each
    detection's rank in its image, so a per-image top-k is ``rank < k`` (traceable, no loop).
    """
    # float32 counts are exact up to 2**24 and keep the exported CumSum in a type TensorRT takes.
    one_hot = (groups[:, None] == torch.arange(num_groups, device=groups.device)[None, :]).to(torch.float32)
    return ((torch.cumsum(one_hot, dim=0) * one_hot).sum(dim=1) - 1).to(torch.int64)
