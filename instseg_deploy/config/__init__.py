"""detectron2 YAML configs read into typed dataclasses, without detectron2."""

from instseg_deploy.config.loader import config_from_tree, dump_tree, load_config, merge_tree, tree_from_text
from instseg_deploy.config.overrides import apply_overrides, looks_like_override_key, split_overrides
from instseg_deploy.config.types import InstsegConfig, ModelConfig

__all__ = [
    "InstsegConfig",
    "ModelConfig",
    "apply_overrides",
    "config_from_tree",
    "dump_tree",
    "load_config",
    "looks_like_override_key",
    "merge_tree",
    "split_overrides",
    "tree_from_text",
]
