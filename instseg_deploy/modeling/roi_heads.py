"""StandardROIHeads: box head + class-specific box regression + mask head, batched."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from instseg_deploy.config.types import BoxHeadConfig, MaskHeadConfig, ROIHeadsConfig
from instseg_deploy.modeling.box_ops import apply_deltas, batched_nms, clip_boxes, rank_within_group
from instseg_deploy.modeling.layers import add_conv_stack, c2_msra_fill, c2_xavier_fill
from instseg_deploy.modeling.poolers import MultilevelRoIAlign


class FastRCNNConvFCHead(nn.Module):
    """(R, C, 7, 7) pooled features -> convs -> flatten -> fcs -> (R, fc_dim)."""

    def __init__(self, in_channels: int, resolution: int, cfg: BoxHeadConfig):
        super().__init__()
        size = resolution * resolution
        channels = add_conv_stack(self, "conv", in_channels, cfg.num_conv, cfg.conv_dim, cfg.norm)
        self.num_conv, self.num_fc = cfg.num_conv, cfg.num_fc
        dim = channels * size
        for i in range(cfg.num_fc):
            fc = nn.Linear(dim, cfg.fc_dim)
            c2_xavier_fill(fc)
            self.add_module(f"fc{i + 1}", fc)
            dim = cfg.fc_dim
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_conv):
            x = getattr(self, f"conv{i + 1}")(x)
        if self.num_fc:
            x = torch.flatten(x, 1)
            for i in range(self.num_fc):
                x = F.relu(getattr(self, f"fc{i + 1}")(x))
        return x


class FastRCNNOutputLayers(nn.Module):
    """Class scores (K+1, background last) and per-class box deltas."""

    def __init__(self, in_dim: int, num_classes: int, cls_agnostic: bool):
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, (1 if cls_agnostic else num_classes) * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.constant_(layer.bias, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class MaskRCNNConvUpsampleHead(nn.Module):
    """(R, C, 14, 14) -> convs -> 2x deconv -> (R, K, 28, 28) mask logits."""

    def __init__(self, in_channels: int, num_classes: int, cfg: MaskHeadConfig):
        super().__init__()
        channels = add_conv_stack(self, "mask_fcn", in_channels, cfg.num_conv, cfg.conv_dim, cfg.norm)
        self.num_conv = cfg.num_conv
        self.deconv = nn.ConvTranspose2d(channels, cfg.conv_dim, 2, stride=2)
        c2_msra_fill(self.deconv)
        self.predictor = nn.Conv2d(cfg.conv_dim, 1 if cfg.cls_agnostic_mask else num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_conv):
            x = getattr(self, f"mask_fcn{i + 1}")(x)
        return self.predictor(F.relu(self.deconv(x)))


@dataclass
class Detections:
    """Final detections of a batch, flat, in network-input pixels.

    boxes (D, 4), scores (D,), classes (D,) int64 0-based, batch_idx (D,) int64,
    mask_probs (D, 28, 28) sigmoid probabilities of each detection's class. Within one
    image they are sorted by decreasing score.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    batch_idx: torch.Tensor
    mask_probs: torch.Tensor


class StandardROIHeads(nn.Module):
    """Box and mask heads over RoIs pooled by ``box_pooler`` / ``mask_pooler``.

    The poolers are passed in, as torchvision's ``box_roi_pool`` / ``mask_roi_pool``: by default
    the standard :class:`MultilevelRoIAlign` with the config's pooler settings; export builds the
    heads with the TensorRT plugin's pooler instead. A pooler maps (features [(N, C, Hl, Wl)],
    rois (R, 5)) to (R, C, S, S) and holds no parameters, so the state dict (detectron2's names)
    is the same whichever pooler is used.
    """

    def __init__(self, cfg: ROIHeadsConfig, box_cfg: BoxHeadConfig, mask_cfg: MaskHeadConfig,
                 in_channels: int, strides: list[int], box_pooler: nn.Module | None = None,
                 mask_pooler: nn.Module | None = None):
        super().__init__()
        self.cfg, self.box_cfg, self.mask_cfg = cfg, box_cfg, mask_cfg
        self.strides = strides
        self.box_pooler = box_pooler if box_pooler is not None else MultilevelRoIAlign(strides, box_cfg.pooler)
        self.box_head = FastRCNNConvFCHead(in_channels, box_cfg.pooler.resolution, box_cfg)
        self.box_predictor = FastRCNNOutputLayers(self.box_head.out_dim, cfg.num_classes,
                                                  box_cfg.cls_agnostic_bbox_reg)
        self.mask_pooler = mask_pooler if mask_pooler is not None else MultilevelRoIAlign(strides, mask_cfg.pooler)
        self.mask_head = MaskRCNNConvUpsampleHead(in_channels, cfg.num_classes, mask_cfg)

    def box_features(self, features: list[torch.Tensor], boxes: torch.Tensor, batch_idx: torch.Tensor):
        """(class logits (R, K+1), box deltas (R, 4K or 4)) of (R, 4) boxes in images (R,) of ``features``."""
        rois = torch.cat([batch_idx[:, None].to(boxes.dtype), boxes], dim=1)
        return self.box_predictor(self.box_head(self.box_pooler(features, rois)))

    def mask_logits(self, features: list[torch.Tensor], boxes: torch.Tensor, batch_idx: torch.Tensor):
        """(R, K or 1, 28, 28) mask logits of (R, 4) boxes in images (R,) of ``features``."""
        rois = torch.cat([batch_idx[:, None].to(boxes.dtype), boxes], dim=1)
        return self.mask_head(self.mask_pooler(features, rois))

    def inference(self, features: list[torch.Tensor], proposal_boxes: torch.Tensor,
                  proposal_batch_idx: torch.Tensor, image_sizes: torch.Tensor) -> Detections:
        """detectron2's fast_rcnn_inference + mask_rcnn_inference for the whole batch."""
        class_logits, box_deltas = self.box_features(features, proposal_boxes, proposal_batch_idx)
        num_classes = self.cfg.num_classes
        boxes = apply_deltas(box_deltas, proposal_boxes, self.box_cfg.bbox_reg_weights)
        boxes = boxes.view(-1, 1 if self.box_cfg.cls_agnostic_bbox_reg else num_classes, 4)  # (R, K or 1, 4)
        sizes = image_sizes[proposal_batch_idx]
        boxes = clip_boxes(boxes, sizes[:, 0:1], sizes[:, 1:2])
        scores = F.softmax(class_logits, dim=-1)[:, :-1]  # (R, K), background dropped
        valid = torch.isfinite(boxes).all(dim=2).all(dim=1) & torch.isfinite(scores).all(dim=1)
        candidates = torch.nonzero((scores > self.cfg.score_thresh_test) & valid[:, None])  # (M, 2)
        roi_idx, classes = candidates[:, 0], candidates[:, 1]
        boxes = boxes[roi_idx, classes if boxes.shape[1] > 1 else torch.zeros_like(classes)]
        scores = scores[roi_idx, classes]
        batch_idx = proposal_batch_idx[roi_idx]
        kept = batched_nms(boxes, scores, batch_idx * num_classes + classes, self.cfg.nms_thresh_test)
        num_images = image_sizes.shape[0]
        kept = kept[rank_within_group(batch_idx[kept], num_images) < self.cfg.detections_per_image]
        boxes, scores, classes, batch_idx = boxes[kept], scores[kept], classes[kept], batch_idx[kept]
        mask_logits = self.mask_logits(features, boxes, batch_idx)  # (D, K or 1, 28, 28)
        mask_channel = classes if mask_logits.shape[1] > 1 else torch.zeros_like(classes)
        mask_probs = mask_logits[torch.arange(mask_logits.shape[0], device=classes.device), mask_channel].sigmoid()
        return Detections(boxes=boxes, scores=scores, classes=classes, batch_idx=batch_idx, mask_probs=mask_probs)
