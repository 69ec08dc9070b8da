"""Read detectron2 YAML configs (full dumps or model-zoo files with ``_BASE_``).

Mirrors yacs/detectron2 semantics without importing them: files are merged onto
detectron2's defaults (``d2_defaults.yaml``), string values are ``literal_eval``-ed
as yacs does (so ``("coco_2017_train",)`` becomes a list), then the model part is
validated and turned into a typed :class:`ModelConfig`.
"""

from __future__ import annotations

import ast
import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from instseg_deploy.config.types import (
    AnchorConfig,
    BoxHeadConfig,
    FPNConfig,
    InputConfig,
    InstsegConfig,
    MaskHeadConfig,
    ModelConfig,
    PoolerConfig,
    ResNetConfig,
    ROIHeadsConfig,
    RPNConfig,
)
from instseg_deploy.errors import ConfigError

_DEFAULTS_FILE = Path(__file__).with_name("d2_defaults.yaml")
_MAX_BASE_DEPTH = 16


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(_DEFAULTS_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def default_tree() -> dict[str, Any]:
    """A fresh copy of detectron2's default config tree."""
    return copy.deepcopy(_defaults())


def _decode(value: Any) -> Any:
    """yacs' value decoding: strings that are Python literals become those literals."""
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
    if isinstance(value, tuple):
        return [_decode(v) for v in value]
    if isinstance(value, list):
        return [_decode(v) if not isinstance(v, str) else v for v in value]
    return value


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """Read one YAML file with its ``_BASE_`` chain resolved (base first, file on top)."""
    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: _BASE_ chain deeper than {_MAX_BASE_DEPTH} (a cycle?)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            tree = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text YAML file") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    base = tree.pop("_BASE_", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise ConfigError(f"{path}: _BASE_ must be a path string")
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    merged = _read_yaml(base_path, depth + 1)
    _merge_into(merged, tree, prefix="", strict=False)
    return merged


def _merge_into(dst: dict[str, Any], src: dict[str, Any], prefix: str, strict: bool) -> None:
    """Recursively merge ``src`` onto ``dst``. ``strict``: reject unknown MODEL keys."""
    for key, value in src.items():
        full = f"{prefix}{key}"
        value = _decode(value)
        if key not in dst:
            if strict and full.startswith("MODEL."):
                raise ConfigError(
                    f"unknown config key {full}: it is not a detectron2 MODEL key, so this "
                    "model may need code we do not have"
                )
            dst[key] = value
            continue
        if isinstance(dst[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full} must be a mapping, got {value!r}")
            _merge_into(dst[key], value, prefix=full + ".", strict=strict)
        else:
            dst[key] = value


def merge_tree(path: str | Path) -> dict[str, Any]:
    """detectron2's default tree with the file (and its bases) merged on top."""
    tree = default_tree()
    _merge_into(tree, _read_yaml(Path(path)), prefix="", strict=True)
    return tree


def load_config(path: str | Path) -> InstsegConfig:
    """Load a detectron2 config file into a typed :class:`InstsegConfig`."""
    tree = merge_tree(path)
    return InstsegConfig(model=model_config_from_tree(tree), raw=tree, source=str(path))


def config_from_tree(tree: dict[str, Any], source: str = "") -> InstsegConfig:
    """Typed config from an already-merged tree (e.g. one stored in a checkpoint)."""
    full = default_tree()
    _merge_into(full, tree, prefix="", strict=True)
    return InstsegConfig(model=model_config_from_tree(full), raw=full, source=source)


def dump_tree(tree: dict[str, Any]) -> str:
    """YAML text of a config tree, loadable by detectron2 and by :func:`load_config`."""
    return yaml.safe_dump(tree, sort_keys=True)


# --- validation ---------------------------------------------------------------------------

_SUPPORTED_NORMS = ("", "FrozenBN", "BN", "SyncBN", "naiveSyncBN", "GN")


def _require(tree: dict[str, Any], key: str, allowed: tuple[Any, ...]) -> Any:
    value = _get(tree, key)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"unsupported config value {key}={value!r} (supported: {shown})")
    return value


def _get(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config key {key} is missing")
        node = node[part]
    return node


def _pooler(tree: dict[str, Any], head: str) -> PoolerConfig:
    pooler_type = _require(tree, f"MODEL.{head}.POOLER_TYPE", ("ROIAlignV2", "ROIAlign"))
    return PoolerConfig(
        resolution=int(_get(tree, f"MODEL.{head}.POOLER_RESOLUTION")),
        sampling_ratio=int(_get(tree, f"MODEL.{head}.POOLER_SAMPLING_RATIO")),
        aligned=pooler_type == "ROIAlignV2",
    )


def _validate_model(tree: dict[str, Any]) -> None:
    """Reject keys that would change the model in ways this implementation does not build."""
    _require(tree, "MODEL.META_ARCHITECTURE", ("GeneralizedRCNN",))
    _require(tree, "MODEL.BACKBONE.NAME", ("build_resnet_fpn_backbone",))
    _require(tree, "MODEL.PROPOSAL_GENERATOR.NAME", ("RPN",))
    _require(tree, "MODEL.RPN.HEAD_NAME", ("StandardRPNHead",))
    _require(tree, "MODEL.ANCHOR_GENERATOR.NAME", ("DefaultAnchorGenerator",))
    _require(tree, "MODEL.ROI_HEADS.NAME", ("StandardROIHeads",))
    _require(tree, "MODEL.ROI_BOX_HEAD.NAME", ("FastRCNNConvFCHead",))
    _require(tree, "MODEL.MASK_ON", (True,))
    _require(tree, "MODEL.ROI_MASK_HEAD.NAME", ("MaskRCNNConvUpsampleHead",))
    _require(tree, "MODEL.KEYPOINT_ON", (False,))
    _require(tree, "MODEL.LOAD_PROPOSALS", (False,))
    _require(tree, "MODEL.RESNETS.DEPTH", (18, 34, 50, 101, 152))
    _require(tree, "MODEL.RESNETS.RES5_DILATION", (1,))
    _require(tree, "MODEL.RESNETS.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.FPN.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.FPN.FUSE_TYPE", ("sum", "avg"))
    _require(tree, "MODEL.ROI_BOX_HEAD.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.ROI_MASK_HEAD.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", (False,))
    _require(tree, "MODEL.ROI_BOX_HEAD.USE_FED_LOSS", (False,))
    _require(tree, "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", (False,))
    _require(tree, "INPUT.FORMAT", ("BGR", "RGB"))
    _require(tree, "TEST.AUG.ENABLED", (False,))
    if any(_get(tree, "MODEL.RESNETS.DEFORM_ON_PER_STAGE")):
        raise ConfigError("unsupported config value MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convs")
    if _get(tree, "MODEL.RESNETS.OUT_FEATURES") != ["res2", "res3", "res4", "res5"] or _get(
        tree, "MODEL.FPN.IN_FEATURES"
    ) != ["res2", "res3", "res4", "res5"]:
        raise ConfigError("unsupported FPN inputs: MODEL.RESNETS.OUT_FEATURES and MODEL.FPN.IN_FEATURES "
                          "must be res2..res5")
    if _get(tree, "MODEL.RPN.IN_FEATURES") != ["p2", "p3", "p4", "p5", "p6"]:
        raise ConfigError("unsupported config value MODEL.RPN.IN_FEATURES (supported: p2..p6)")
    if _get(tree, "MODEL.ROI_HEADS.IN_FEATURES") != ["p2", "p3", "p4", "p5"]:
        raise ConfigError("unsupported config value MODEL.ROI_HEADS.IN_FEATURES (supported: p2..p5)")
    if len(_get(tree, "MODEL.RPN.CONV_DIMS")) != 1:
        raise ConfigError("unsupported config value MODEL.RPN.CONV_DIMS: only one RPN conv is supported")
    angles = _get(tree, "MODEL.ANCHOR_GENERATOR.ANGLES")
    if angles not in ([[-90, 0, 90]], [[0]], [[-90.0, 0.0, 90.0]]):
        # Angles only matter for rotated anchors; the default value is ignored by detectron2.
        raise ConfigError("unsupported config value MODEL.ANCHOR_GENERATOR.ANGLES (rotated anchors)")
    depth = _get(tree, "MODEL.RESNETS.DEPTH")
    if depth in (18, 34) and _get(tree, "MODEL.RESNETS.RES2_OUT_CHANNELS") != 64:
        raise ConfigError("MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for ResNet-18/34")
    if int(_get(tree, "MODEL.ROI_HEADS.NUM_CLASSES")) < 1:
        raise ConfigError("MODEL.ROI_HEADS.NUM_CLASSES must be >= 1")
    if len(_get(tree, "MODEL.ANCHOR_GENERATOR.SIZES")) not in (1, 5):
        raise ConfigError("MODEL.ANCHOR_GENERATOR.SIZES must list one size set or one per RPN level")
    if int(_get(tree, "VERSION")) < 2:
        raise ConfigError("config VERSION < 2 (pre-2019 detectron2 layout) is not supported")


def _per_level(values: list[Any], levels: int) -> tuple[tuple[float, ...], ...]:
    """detectron2's _broadcast_params: one entry for all levels, or one per level."""
    values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    if len(values) == 1:
        values = values * levels
    return tuple(tuple(float(x) for x in v) for v in values)


def model_config_from_tree(tree: dict[str, Any]) -> ModelConfig:
    """Build the typed model config from a merged detectron2 tree (validating it first)."""
    _validate_model(tree)
    m = tree["MODEL"]
    inp = tree["INPUT"]
    min_train = inp["MIN_SIZE_TRAIN"]
    resnets, fpn, rpn, roi, box, mask = (
        m["RESNETS"], m["FPN"], m["RPN"], m["ROI_HEADS"], m["ROI_BOX_HEAD"], m["ROI_MASK_HEAD"]
    )
    num_levels = len(rpn["IN_FEATURES"])
    return ModelConfig(
        input=InputConfig(
            format=inp["FORMAT"],
            min_size_test=int(inp["MIN_SIZE_TEST"]),
            max_size_test=int(inp["MAX_SIZE_TEST"]),
            min_size_train=tuple(int(s) for s in (min_train if isinstance(min_train, list) else [min_train])),
            max_size_train=int(inp["MAX_SIZE_TRAIN"]),
            min_size_train_sampling=inp["MIN_SIZE_TRAIN_SAMPLING"],
            random_flip=inp["RANDOM_FLIP"],
            mask_format=inp["MASK_FORMAT"],
        ),
        pixel_mean=tuple(float(v) for v in m["PIXEL_MEAN"]),
        pixel_std=tuple(float(v) for v in m["PIXEL_STD"]),
        resnet=ResNetConfig(
            depth=int(resnets["DEPTH"]),
            norm=resnets["NORM"],
            num_groups=int(resnets["NUM_GROUPS"]),
            width_per_group=int(resnets["WIDTH_PER_GROUP"]),
            stem_out_channels=int(resnets["STEM_OUT_CHANNELS"]),
            res2_out_channels=int(resnets["RES2_OUT_CHANNELS"]),
            stride_in_1x1=bool(resnets["STRIDE_IN_1X1"]),
            res5_dilation=int(resnets["RES5_DILATION"]),
            out_features=tuple(resnets["OUT_FEATURES"]),
            freeze_at=int(m["BACKBONE"]["FREEZE_AT"]),
        ),
        fpn=FPNConfig(
            in_features=tuple(fpn["IN_FEATURES"]),
            out_channels=int(fpn["OUT_CHANNELS"]),
            norm=fpn["NORM"],
            fuse_type=fpn["FUSE_TYPE"],
        ),
        anchors=AnchorConfig(
            sizes=_per_level(m["ANCHOR_GENERATOR"]["SIZES"], num_levels),
            aspect_ratios=_per_level(m["ANCHOR_GENERATOR"]["ASPECT_RATIOS"], num_levels),
            offset=float(m["ANCHOR_GENERATOR"]["OFFSET"]),
        ),
        rpn=RPNConfig(
            in_features=tuple(rpn["IN_FEATURES"]),
            conv_dim=int(rpn["CONV_DIMS"][0]),
            pre_nms_topk_test=int(rpn["PRE_NMS_TOPK_TEST"]),
            post_nms_topk_test=int(rpn["POST_NMS_TOPK_TEST"]),
            pre_nms_topk_train=int(rpn["PRE_NMS_TOPK_TRAIN"]),
            post_nms_topk_train=int(rpn["POST_NMS_TOPK_TRAIN"]),
            nms_thresh=float(rpn["NMS_THRESH"]),
            min_size=float(m["PROPOSAL_GENERATOR"]["MIN_SIZE"]),
            bbox_reg_weights=tuple(float(w) for w in rpn["BBOX_REG_WEIGHTS"]),
            iou_thresholds=tuple(float(t) for t in rpn["IOU_THRESHOLDS"]),
            iou_labels=tuple(int(t) for t in rpn["IOU_LABELS"]),
            batch_size_per_image=int(rpn["BATCH_SIZE_PER_IMAGE"]),
            positive_fraction=float(rpn["POSITIVE_FRACTION"]),
            bbox_reg_loss_type=rpn["BBOX_REG_LOSS_TYPE"],
            smooth_l1_beta=float(rpn["SMOOTH_L1_BETA"]),
            loss_weight=float(rpn["LOSS_WEIGHT"]),
            bbox_reg_loss_weight=float(rpn["BBOX_REG_LOSS_WEIGHT"]),
            boundary_thresh=int(rpn["BOUNDARY_THRESH"]),
        ),
        roi_heads=ROIHeadsConfig(
            num_classes=int(roi["NUM_CLASSES"]),
            in_features=tuple(roi["IN_FEATURES"]),
            score_thresh_test=float(roi["SCORE_THRESH_TEST"]),
            nms_thresh_test=float(roi["NMS_THRESH_TEST"]),
            detections_per_image=int(tree["TEST"]["DETECTIONS_PER_IMAGE"]),
            batch_size_per_image=int(roi["BATCH_SIZE_PER_IMAGE"]),
            positive_fraction=float(roi["POSITIVE_FRACTION"]),
            iou_thresholds=tuple(float(t) for t in roi["IOU_THRESHOLDS"]),
            iou_labels=tuple(int(t) for t in roi["IOU_LABELS"]),
            proposal_append_gt=bool(roi["PROPOSAL_APPEND_GT"]),
        ),
        box_head=BoxHeadConfig(
            pooler=_pooler(tree, "ROI_BOX_HEAD"),
            num_conv=int(box["NUM_CONV"]),
            conv_dim=int(box["CONV_DIM"]),
            num_fc=int(box["NUM_FC"]),
            fc_dim=int(box["FC_DIM"]),
            norm=box["NORM"],
            bbox_reg_weights=tuple(float(w) for w in box["BBOX_REG_WEIGHTS"]),
            cls_agnostic_bbox_reg=bool(box["CLS_AGNOSTIC_BBOX_REG"]),
            bbox_reg_loss_type=box["BBOX_REG_LOSS_TYPE"],
            smooth_l1_beta=float(box["SMOOTH_L1_BETA"]),
            bbox_reg_loss_weight=float(box["BBOX_REG_LOSS_WEIGHT"]),
        ),
        mask_head=MaskHeadConfig(
            pooler=_pooler(tree, "ROI_MASK_HEAD"),
            num_conv=int(mask["NUM_CONV"]),
            conv_dim=int(mask["CONV_DIM"]),
            norm=mask["NORM"],
            cls_agnostic_mask=bool(mask["CLS_AGNOSTIC_MASK"]),
        ),
    )
