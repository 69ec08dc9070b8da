"""Mask R-CNN (detectron2's GeneralizedRCNN with FPN, RPN and StandardROIHeads)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from instseg_deploy.config.types import ModelConfig
from instseg_deploy.modeling.anchors import AnchorGenerator
from instseg_deploy.modeling.fpn import FPN
from instseg_deploy.modeling.resnet import ResNet
from instseg_deploy.modeling.roi_heads import Detections, StandardROIHeads
from instseg_deploy.modeling.rpn import RPN, Proposals


class MaskRCNN(nn.Module):
    """Parameter names match detectron2's, so its state dicts load by name.

    The inference path is one traceable graph over the whole batch: fixed top-k sizes,
    group-wise NMS instead of per-image loops, no ``.item()``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = FPN(ResNet(cfg.resnet), cfg.fpn)
        rpn_strides = [self.backbone.strides[f] for f in cfg.rpn.in_features]
        self.proposal_generator = RPN(cfg.rpn, AnchorGenerator(cfg.anchors, rpn_strides), self.backbone.out_channels)
        roi_strides = [self.backbone.strides[f] for f in cfg.roi_heads.in_features]
        self.roi_heads = StandardROIHeads(cfg.roi_heads, cfg.box_head, cfg.mask_head,
                                          self.backbone.out_channels, roi_strides)
        # Not saved in detectron2 checkpoints either: they come from the config.
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def size_divisibility(self) -> int:
        return self.backbone.size_divisibility

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.pixel_mean) / self.pixel_std

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.backbone(self.normalize(images))

    def inference(self, images: torch.Tensor, image_sizes: torch.Tensor) -> tuple[Detections, Proposals]:
        """images: (N, 3, H, W) float32 pixels in the model's channel order, H and W multiples
        of ``size_divisibility``, padded with the pixel mean; image_sizes: (N, 2) int64 (h, w)
        of each image before padding.
        """
        features = self.features(images)
        rpn_features = [features[f] for f in self.cfg.rpn.in_features]
        anchors, logits, deltas = self.proposal_generator(rpn_features, image_sizes)
        proposals = self.proposal_generator.select_proposals(anchors, logits, deltas, image_sizes)
        roi_features = [features[f] for f in self.cfg.roi_heads.in_features]
        detections = self.roi_heads.inference(roi_features, proposals.boxes, proposals.batch_idx, image_sizes)
        return detections, proposals

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Inference as a tuple: boxes (D,4), scores (D,), classes (D,), batch_idx (D,), mask_probs (D,28,28)."""
        d, _ = self.inference(images, image_sizes)
        return d.boxes, d.scores, d.classes, d.batch_idx, d.mask_probs

    def with_roi_poolers(self, box_pooler: nn.Module, mask_pooler: nn.Module) -> MaskRCNN:
        """This model pooling RoIs with other poolers (same contract as the ROI heads'); ``self`` is unchanged.

        The result shares every other submodule with ``self``: the same parameter tensors under the
        same names, nothing copied. It is a view for tracing, not a second model to train.
        """
        heads = _replace_children(self.roi_heads, box_pooler=box_pooler, mask_pooler=mask_pooler)
        return _replace_children(self, roi_heads=heads)


def _replace_children(module: nn.Module, **children: nn.Module) -> nn.Module:
    """A new ``module`` object sharing its submodules, parameters and buffers, with ``children`` replaced."""
    clone = copy.copy(module)
    # copy.copy would share the submodule table itself: the clone gets its own before entries change.
    clone._modules = dict(module._modules)
    for name, child in children.items():
        setattr(clone, name, child)
    return clone


def build_model(cfg: ModelConfig) -> MaskRCNN:
    """A Mask R-CNN in eval mode with detectron2's random initialisation."""
    return MaskRCNN(cfg).eval()
