"""Region proposal network: StandardRPNHead + detectron2's proposal selection, batched."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from instseg_deploy.config.types import RPNConfig
from instseg_deploy.modeling.anchors import AnchorGenerator
from instseg_deploy.modeling.box_ops import apply_deltas, batched_nms, clip_boxes, nonempty, rank_within_group


class StandardRPNHead(nn.Module):
    """Shared 3x3 conv, then per-anchor objectness logits and box deltas on every level."""

    def __init__(self, in_channels: int, num_anchors: int, conv_dim: int = -1, box_dim: int = 4):
        super().__init__()
        conv_dim = in_channels if conv_dim == -1 else conv_dim
        self.conv = nn.Conv2d(in_channels, conv_dim, 3, padding=1)
        self.objectness_logits = nn.Conv2d(conv_dim, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(conv_dim, num_anchors * box_dim, 1)
        self.box_dim = box_dim
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: logits (N, Hi*Wi*A) and deltas (N, Hi*Wi*A, 4), location-major."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.objectness_logits(t).permute(0, 2, 3, 1).flatten(1))
            d = self.anchor_deltas(t)
            n, _, h, w = d.shape
            deltas.append(d.view(n, -1, self.box_dim, h, w).permute(0, 3, 4, 1, 2).flatten(1, -2))
        return logits, deltas


@dataclass
class Proposals:
    """Post-NMS proposals of a whole batch, flat.

    boxes: (R, 4) network-input pixels; logits: (R,); batch_idx: (R,) int64. Within one image
    they are sorted by decreasing objectness, as detectron2 feeds them to the ROI heads.
    """

    boxes: torch.Tensor
    logits: torch.Tensor
    batch_idx: torch.Tensor


class RPN(nn.Module):
    def __init__(self, cfg: RPNConfig, anchor_generator: AnchorGenerator, in_channels: int):
        super().__init__()
        self.cfg = cfg
        self.anchor_generator = anchor_generator
        num_anchors = set(anchor_generator.num_anchors_per_location)
        if len(num_anchors) != 1:
            raise ValueError("every RPN level must have the same number of anchors per location")
        self.rpn_head = StandardRPNHead(in_channels, num_anchors.pop(), cfg.conv_dim)

    def forward(self, features: list[torch.Tensor], image_sizes: torch.Tensor):
        """features: [p2..p6]; image_sizes: (N, 2) int64 (h, w) before padding.

        Returns the head outputs and anchors too, so training can compute losses from them.
        """
        anchors = self.anchor_generator(features)
        logits, deltas = self.rpn_head(features)
        return anchors, logits, deltas

    def select_proposals(self, anchors: list[torch.Tensor], logits: list[torch.Tensor],
                         deltas: list[torch.Tensor], image_sizes: torch.Tensor, training: bool = False) -> Proposals:
        """detectron2's find_top_rpn_proposals for the whole batch at once.

        Per image and level: top-k by logit, decode, clip, drop small boxes, NMS per level;
        then the best post-NMS top-k per image over all levels.
        """
        pre_topk = self.cfg.pre_nms_topk_train if training else self.cfg.pre_nms_topk_test
        post_topk = self.cfg.post_nms_topk_train if training else self.cfg.post_nms_topk_test
        num_images = logits[0].shape[0]
        all_boxes, all_scores, all_levels = [], [], []
        for level, (anchors_i, logits_i, deltas_i) in enumerate(zip(anchors, logits, deltas)):
            num_anchors = logits_i.shape[1]
            if isinstance(num_anchors, torch.Tensor):  # traced: keep k dynamic for any input size
                k = torch.clamp(num_anchors, max=pre_topk)
            else:
                k = min(pre_topk, num_anchors)
            scores_i, idx = logits_i.topk(k, dim=1)  # (N, k)
            deltas_i = torch.gather(deltas_i, 1, idx[..., None].expand(-1, -1, 4))
            boxes_i = apply_deltas(deltas_i.reshape(-1, 4), anchors_i[idx.reshape(-1)], self.cfg.bbox_reg_weights)
            all_boxes.append(boxes_i.view(num_images, -1, 4))
            all_scores.append(scores_i)
            all_levels.append(torch.full_like(scores_i[0], level, dtype=torch.int64))
        boxes = torch.cat(all_boxes, dim=1)  # (N, L, 4)
        scores = torch.cat(all_scores, dim=1)  # (N, L)
        levels = torch.cat(all_levels)  # (L,)
        heights = image_sizes[:, 0:1]
        widths = image_sizes[:, 1:2]
        boxes = clip_boxes(boxes, heights, widths)
        batch_idx = torch.arange(num_images, device=boxes.device)[:, None].expand_as(scores)
        keep = nonempty(boxes, self.cfg.min_size) & torch.isfinite(scores) & torch.isfinite(boxes).all(dim=-1)
        boxes, scores, batch_idx = boxes[keep], scores[keep], batch_idx[keep]
        levels = levels[None, :].expand(num_images, -1)[keep]
        num_levels = len(anchors)
        kept = batched_nms(boxes, scores, batch_idx * num_levels + levels, self.cfg.nms_thresh)
        kept = kept[rank_within_group(batch_idx[kept], num_images) < post_topk]
        return Proposals(boxes=boxes[kept], logits=scores[kept], batch_idx=batch_idx[kept])
