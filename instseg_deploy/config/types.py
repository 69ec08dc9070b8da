"""Typed view of the parts of a detectron2 config that define the Mask R-CNN.

Plain frozen dataclasses: every model stage is built from one of these, never from
the raw YAML tree. The raw tree is kept next to it (``InstsegConfig.raw``) so that
training-only keys (SOLVER, DATALOADER, ...) survive a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputConfig:
    format: str = "BGR"  # channel order the network expects ("BGR" or "RGB")
    min_size_test: int = 800
    max_size_test: int = 1333
    min_size_train: tuple[int, ...] = (800,)
    max_size_train: int = 1333
    min_size_train_sampling: str = "choice"
    random_flip: str = "horizontal"
    mask_format: str = "polygon"


@dataclass(frozen=True)
class ResNetConfig:
    depth: int = 50
    norm: str = "FrozenBN"
    num_groups: int = 1
    width_per_group: int = 64
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    stride_in_1x1: bool = True
    res5_dilation: int = 1
    out_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")
    freeze_at: int = 2


@dataclass(frozen=True)
class FPNConfig:
    in_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")
    out_channels: int = 256
    norm: str = ""
    fuse_type: str = "sum"


@dataclass(frozen=True)
class AnchorConfig:
    sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),)
    offset: float = 0.0


@dataclass(frozen=True)
class RPNConfig:
    in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")
    conv_dim: int = -1  # -1: same as the input channels
    pre_nms_topk_test: int = 1000
    post_nms_topk_test: int = 1000
    pre_nms_topk_train: int = 2000
    post_nms_topk_train: int = 1000
    nms_thresh: float = 0.7
    min_size: float = 0.0
    bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    # training
    iou_thresholds: tuple[float, ...] = (0.3, 0.7)
    iou_labels: tuple[int, ...] = (0, -1, 1)
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    bbox_reg_loss_type: str = "smooth_l1"
    smooth_l1_beta: float = 0.0
    loss_weight: float = 1.0
    bbox_reg_loss_weight: float = 1.0
    boundary_thresh: int = -1


@dataclass(frozen=True)
class ROIHeadsConfig:
    num_classes: int = 80
    in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5")
    score_thresh_test: float = 0.05
    nms_thresh_test: float = 0.5
    detections_per_image: int = 100
    # training
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    iou_thresholds: tuple[float, ...] = (0.5,)
    iou_labels: tuple[int, ...] = (0, 1)
    proposal_append_gt: bool = True


@dataclass(frozen=True)
class PoolerConfig:
    resolution: int = 7
    sampling_ratio: int = 0
    aligned: bool = True  # ROIAlignV2 (True) or ROIAlign (False)
    canonical_box_size: int = 224
    canonical_level: int = 4


@dataclass(frozen=True)
class BoxHeadConfig:
    pooler: PoolerConfig = PoolerConfig(resolution=7)
    num_conv: int = 0
    conv_dim: int = 256
    num_fc: int = 2
    fc_dim: int = 1024
    norm: str = ""
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    cls_agnostic_bbox_reg: bool = False
    # training
    bbox_reg_loss_type: str = "smooth_l1"
    smooth_l1_beta: float = 0.0
    bbox_reg_loss_weight: float = 1.0


@dataclass(frozen=True)
class MaskHeadConfig:
    pooler: PoolerConfig = PoolerConfig(resolution=14)
    num_conv: int = 4
    conv_dim: int = 256
    norm: str = ""
    cls_agnostic_mask: bool = False


@dataclass(frozen=True)
class ModelConfig:
    input: InputConfig = InputConfig()
    pixel_mean: tuple[float, float, float] = (103.530, 116.280, 123.675)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resnet: ResNetConfig = ResNetConfig()
    fpn: FPNConfig = FPNConfig()
    anchors: AnchorConfig = AnchorConfig()
    rpn: RPNConfig = RPNConfig()
    roi_heads: ROIHeadsConfig = ROIHeadsConfig()
    box_head: BoxHeadConfig = BoxHeadConfig()
    mask_head: MaskHeadConfig = MaskHeadConfig()
    size_divisibility: int = 32

    @property
    def num_classes(self) -> int:
        return self.roi_heads.num_classes


@dataclass
class InstsegConfig:
    """A loaded config: the typed model description plus the full merged tree."""

    model: ModelConfig
    raw: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    class_names: tuple[str, ...] | None = None
    # The command-line KEY VALUE overrides applied on top of the file, flat and as written
    # (re-appliable with config.apply_overrides), so exports and run folders can record them.
    overrides: tuple[str, ...] = ()
    # Keys that are not detectron2's (non-MODEL; kept in ``raw`` as written, nothing reads them).
    unknown_keys: tuple[str, ...] = ()

    @property
    def weights(self) -> str:
        """MODEL.WEIGHTS after the file and the overrides ("" when unset): a path or a URL."""
        model = self.raw.get("MODEL")
        value = model.get("WEIGHTS") if isinstance(model, dict) else None
        return value if isinstance(value, str) else ""
