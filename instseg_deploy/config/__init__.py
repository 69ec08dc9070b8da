"""detectron2 YAML configs read into typed dataclasses, without detectron2."""

from instseg_deploy.config.loader import config_from_tree, dump_tree, load_config
from instseg_deploy.config.types import InstsegConfig, ModelConfig

__all__ = ["InstsegConfig", "ModelConfig", "config_from_tree", "dump_tree", "load_config"]
