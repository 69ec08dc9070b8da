"""Mask R-CNN training losses with detectron2's semantics, from the model's own submodules.

The inference path is untouched: :func:`compute_losses` runs the backbone, the RPN head and
the ROI heads' ``box_features``/``mask_logits`` as inference does, and adds what training
needs around them (anchor and proposal matching, sampling, targets, losses).

Loss names and normalisation follow detectron2:
- ``loss_rpn_cls``/``loss_rpn_loc``: BCE over the sampled anchors and the box loss of the
  positive ones, both summed and divided by RPN.BATCH_SIZE_PER_IMAGE x images.
- ``loss_cls``: softmax cross-entropy over the sampled proposals (background = class K);
  ``loss_box_reg``: class-specific box loss of the foreground ones, divided by all samples.
- ``loss_mask``: mean per-pixel BCE of the 28x28 logits of each foreground's ground-truth class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from instseg_deploy.config.types import ROIHeadsConfig, RPNConfig
from instseg_deploy.errors import ConfigError
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.modeling.box_ops import apply_deltas, get_deltas
from instseg_deploy.modeling.rpn import Proposals
from instseg_deploy.training.matcher import Matcher, pairwise_iou
from instseg_deploy.training.sampling import subsample_labels
from instseg_deploy.training.targets import ImageTargets, crop_and_resize

BOX_LOSS_TYPES = ("smooth_l1", "giou", "diou", "ciou")
_IOU_LOSSES = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """fvcore's smooth L1, elementwise; ``beta`` < 1e-5 is plain L1 (detectron2's default 0)."""
    diff = torch.abs(pred - target)
    if beta < 1e-5:
        return diff
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def box_regression_loss(src_boxes: torch.Tensor, pred_deltas: torch.Tensor, gt_boxes: torch.Tensor,
                        weights: tuple[float, ...], loss_type: str, beta: float) -> torch.Tensor:
    """Summed box loss of R foreground predictions: src_boxes (R, 4) anchors or proposals,
    pred_deltas (R, 4), gt_boxes (R, 4). IoU-type losses compare the decoded boxes."""
    if loss_type == "smooth_l1":
        return smooth_l1(pred_deltas, get_deltas(src_boxes, gt_boxes, weights), beta).sum()
    if loss_type in _IOU_LOSSES:
        return _IOU_LOSSES[loss_type](apply_deltas(pred_deltas, src_boxes, weights), gt_boxes, reduction="sum")
    raise ConfigError(f"unsupported box regression loss {loss_type!r} (supported: {', '.join(BOX_LOSS_TYPES)})")


def label_anchors(cfg: RPNConfig, anchors: torch.Tensor, targets: list[ImageTargets], image_sizes: torch.Tensor,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """detectron2's RPN.label_and_sample_anchors.

    anchors: (A, 4), the same for every image. Returns labels (N, A) int64 (1 sampled positive,
    0 sampled negative, -1 not sampled) and matched ground-truth boxes (N, A, 4).
    """
    matcher = Matcher(cfg.iou_thresholds, cfg.iou_labels, allow_low_quality_matches=True)
    all_labels, all_boxes = [], []
    for target, (height, width) in zip(targets, image_sizes.tolist()):
        matched, labels = matcher(pairwise_iou(target.boxes, anchors))
        labels = labels.to(torch.int64)
        if cfg.boundary_thresh >= 0:
            t = cfg.boundary_thresh
            inside = ((anchors[:, 0] >= -t) & (anchors[:, 1] >= -t)
                      & (anchors[:, 2] < width + t) & (anchors[:, 3] < height + t))
            labels[~inside] = -1
        positive, negative = subsample_labels(labels, cfg.batch_size_per_image, cfg.positive_fraction, 0, generator)
        labels = torch.full_like(labels, -1)
        labels[positive] = 1
        labels[negative] = 0
        all_labels.append(labels)
        all_boxes.append(target.boxes[matched] if len(target) else torch.zeros_like(anchors))
    return torch.stack(all_labels), torch.stack(all_boxes)


def rpn_losses(cfg: RPNConfig, anchors: list[torch.Tensor], logits: list[torch.Tensor], deltas: list[torch.Tensor],
               targets: list[ImageTargets], image_sizes: torch.Tensor, generator: torch.Generator | None
               ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """anchors: per level (Ai, 4); logits: per level (N, Ai); deltas: per level (N, Ai, 4)."""
    all_anchors = torch.cat(anchors)
    labels, gt_boxes = label_anchors(cfg, all_anchors, targets, image_sizes, generator)
    pred_logits = torch.cat(logits, dim=1)  # (N, A)
    pred_deltas = torch.cat(deltas, dim=1)  # (N, A, 4)
    positive = labels == 1
    valid = labels >= 0
    num_images = len(targets)
    src = all_anchors[None].expand(num_images, -1, -1)[positive]
    loc = box_regression_loss(src, pred_deltas[positive].float(), gt_boxes[positive], cfg.bbox_reg_weights,
                              cfg.bbox_reg_loss_type, cfg.smooth_l1_beta)
    cls = F.binary_cross_entropy_with_logits(pred_logits[valid].float(), labels[valid].float(), reduction="sum")
    normalizer = cfg.batch_size_per_image * num_images
    losses = {"loss_rpn_cls": cls / normalizer * cfg.loss_weight,
              "loss_rpn_loc": loc / normalizer * cfg.loss_weight * cfg.bbox_reg_loss_weight}
    stats = {"rpn/num_pos_anchors": positive.sum().item() / num_images,
             "rpn/num_neg_anchors": (labels == 0).sum().item() / num_images}
    return losses, stats


@dataclass
class SampledProposals:
    """The ROI heads' training samples of a batch, image after image.

    boxes (S, 4); batch_idx (S,); classes (S,) int64, K for background; gt_boxes (S, 4) the
    matched ground truth (zeros without any); gt_index (S,) its index in the image's targets.
    """

    boxes: torch.Tensor
    batch_idx: torch.Tensor
    classes: torch.Tensor
    gt_boxes: torch.Tensor
    gt_index: torch.Tensor


def sample_proposals(cfg: ROIHeadsConfig, proposals: Proposals, targets: list[ImageTargets],
                     generator: torch.Generator | None) -> SampledProposals:
    """detectron2's StandardROIHeads.label_and_sample_proposals (ground truth added as proposals)."""
    matcher = Matcher(cfg.iou_thresholds, cfg.iou_labels, allow_low_quality_matches=False)
    background = cfg.num_classes
    parts: list[tuple[torch.Tensor, ...]] = []
    for b, target in enumerate(targets):
        boxes = proposals.boxes[proposals.batch_idx == b]
        if cfg.proposal_append_gt:
            boxes = torch.cat([boxes, target.boxes.to(boxes.dtype)])
        matched, labels = matcher(pairwise_iou(target.boxes, boxes))
        if len(target):
            classes = target.classes[matched]
            classes[labels == 0] = background
            classes[labels == -1] = -1
        else:
            classes = torch.full_like(matched, background)
        fg, bg = subsample_labels(classes, cfg.batch_size_per_image, cfg.positive_fraction, background, generator)
        keep = torch.cat([fg, bg])
        gt_boxes = target.boxes[matched[keep]] if len(target) else torch.zeros_like(boxes[keep])
        parts.append((boxes[keep], torch.full_like(keep, b), classes[keep], gt_boxes, matched[keep]))
    return SampledProposals(*(torch.cat(tensors) for tensors in zip(*parts)))


def box_losses(model: MaskRCNN, features: list[torch.Tensor], samples: SampledProposals
               ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """detectron2's FastRCNNOutputLayers.losses on the sampled proposals."""
    box_cfg = model.roi_heads.box_cfg
    num_classes = model.roi_heads.cfg.num_classes
    class_logits, deltas = model.roi_heads.box_features(features, samples.boxes, samples.batch_idx)
    class_logits, deltas = class_logits.float(), deltas.float()
    classes = samples.classes
    loss_cls = F.cross_entropy(class_logits, classes) if classes.numel() else class_logits.sum() * 0.0
    fg = torch.nonzero((classes >= 0) & (classes < num_classes)).squeeze(1)
    if deltas.shape[1] == 4:  # class-agnostic regression
        fg_deltas = deltas[fg]
    else:
        fg_deltas = deltas.view(-1, num_classes, 4)[fg, classes[fg]]
    loss_box = box_regression_loss(samples.boxes[fg], fg_deltas, samples.gt_boxes[fg], box_cfg.bbox_reg_weights,
                                   box_cfg.bbox_reg_loss_type, box_cfg.smooth_l1_beta)
    loss_box = loss_box / max(classes.numel(), 1) * box_cfg.bbox_reg_loss_weight
    with torch.no_grad():
        predicted = class_logits.argmax(dim=1)
        stats = {"fast_rcnn/cls_accuracy": (predicted == classes).float().mean().item() if classes.numel() else 0.0}
        if fg.numel():
            stats["fast_rcnn/fg_cls_accuracy"] = (predicted[fg] == classes[fg]).float().mean().item()
            stats["fast_rcnn/false_negative"] = (predicted[fg] == num_classes).float().mean().item()
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box}, stats


def mask_loss(model: MaskRCNN, features: list[torch.Tensor], samples: SampledProposals,
              targets: list[ImageTargets]) -> tuple[torch.Tensor, dict[str, float]]:
    """detectron2's mask_rcnn_loss on the foreground samples (ground-truth class channel)."""
    num_classes = model.roi_heads.cfg.num_classes
    fg = torch.nonzero((samples.classes >= 0) & (samples.classes < num_classes)).squeeze(1)
    boxes, batch_idx, classes, gt_index = (samples.boxes[fg], samples.batch_idx[fg], samples.classes[fg],
                                           samples.gt_index[fg])
    logits = model.roi_heads.mask_logits(features, boxes, batch_idx).float()  # (R, K or 1, M, M)
    if fg.numel() == 0:
        return logits.sum() * 0.0, {}
    size = logits.shape[2]
    gt_masks = torch.cat([crop_and_resize(target.masks, gt_index[batch_idx == b], boxes[batch_idx == b], size)
                          for b, target in enumerate(targets)])
    channel = classes if logits.shape[1] > 1 else torch.zeros_like(classes)
    logits = logits[torch.arange(logits.shape[0], device=logits.device), channel]
    loss = F.binary_cross_entropy_with_logits(logits, gt_masks.to(logits.dtype), reduction="mean")
    with torch.no_grad():
        accuracy = ((logits > 0) == gt_masks).float().mean().item()
    return loss, {"mask_rcnn/accuracy": accuracy}


def compute_losses(model: MaskRCNN, images: torch.Tensor, image_sizes: torch.Tensor, targets: list[ImageTargets],
                   generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Training losses of a batch.

    images: (N, 3, H, W) float32 pixels in the model's channel order, padded with the pixel
    mean (as for inference); image_sizes: (N, 2) int64 (h, w) before padding; targets: one
    per image, on the images' device. ``generator`` (CPU) drives the anchor and proposal
    sampling. Returns detectron2's five losses and a few detached statistics.
    """
    if len(targets) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(targets)} targets")
    features = model.features(images)
    rpn = model.proposal_generator
    anchors, logits, deltas = rpn([features[f] for f in model.cfg.rpn.in_features], image_sizes)
    losses, stats = rpn_losses(model.cfg.rpn, anchors, logits, deltas, targets, image_sizes, generator)
    with torch.no_grad():  # detectron2 does not backpropagate through proposal selection
        proposals = rpn.select_proposals(anchors, [x.detach().float() for x in logits],
                                         [x.detach().float() for x in deltas], image_sizes, training=True)
        samples = sample_proposals(model.cfg.roi_heads, proposals, targets, generator)
    roi_features = [features[f] for f in model.cfg.roi_heads.in_features]
    box, box_stats = box_losses(model, roi_features, samples)
    losses.update(box)
    losses["loss_mask"], mask_stats = mask_loss(model, roi_features, samples, targets)
    stats.update(box_stats)
    stats.update(mask_stats)
    background = samples.classes == model.cfg.roi_heads.num_classes
    stats["roi_head/num_fg_samples"] = (~background).sum().item() / len(targets)
    stats["roi_head/num_bg_samples"] = background.sum().item() / len(targets)
    return losses, stats
