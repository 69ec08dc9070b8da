"""Safe reading of detectron2 and instseg checkpoints."""

from instseg_deploy.checkpoint.loader import Checkpoint, load_weights, read_checkpoint

__all__ = ["Checkpoint", "load_weights", "read_checkpoint"]
