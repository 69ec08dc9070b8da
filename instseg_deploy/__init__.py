"""instseg-deploy: Mask R-CNN from detectron2 checkpoints to fast deployment."""

__version__ = "0.1.0"
