"""Mask R-CNN in plain PyTorch with detectron2's semantics and parameter names."""

from instseg_deploy.modeling.mask_rcnn import MaskRCNN, build_model

__all__ = ["MaskRCNN", "build_model"]
