"""`instseg info`: what a config + checkpoint describe."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from instseg_deploy.cli.common import ConfigOption, WeightsOption, config_overrides, overrides_argument, user_errors
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg info --config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml --weights model_final_f10217.pkl

  instseg info -c output/config.yaml -w output/model_final.pth
"""


@user_errors
def info(config: Optional[Path] = ConfigOption, weights: Optional[Path] = WeightsOption,
         opts: Optional[list[str]] = overrides_argument()) -> None:
    """Architecture summary, parameter count and classes of a model."""
    from instseg_deploy.checkpoint import read_checkpoint
    from instseg_deploy.runtime.torch_model import load_model

    if weights is None and config is None:
        raise InstsegError("--weights is required")
    model, cfg = load_model(config, weights, overrides=config_overrides(opts))
    m = cfg.model
    weights = weights or cfg.weights
    kind = read_checkpoint(weights).kind
    params = sum(p.numel() for p in model.parameters())
    table = Table(title="Mask R-CNN", show_header=False)
    table.add_row("config", cfg.source)
    table.add_row("weights", f"{weights} ({kind})")
    table.add_row("backbone", f"ResNet-{m.resnet.depth} (norm {m.resnet.norm}, groups {m.resnet.num_groups}, "
                              f"width/group {m.resnet.width_per_group}, stride in 1x1 {m.resnet.stride_in_1x1}) + FPN "
                              f"{m.fpn.out_channels} ch ({m.fpn.fuse_type})")
    table.add_row("RPN", f"anchors {[s[0] for s in m.anchors.sizes]} x ratios {list(m.anchors.aspect_ratios[0])}, "
                         f"pre/post NMS top-k {m.rpn.pre_nms_topk_test}/{m.rpn.post_nms_topk_test}, "
                         f"NMS {m.rpn.nms_thresh}")
    table.add_row("box head", f"{m.box_head.num_conv} conv + {m.box_head.num_fc} fc x {m.box_head.fc_dim}, "
                              f"pooler {m.box_head.pooler.resolution}x{m.box_head.pooler.resolution} "
                              f"{'ROIAlignV2' if m.box_head.pooler.aligned else 'ROIAlign'}")
    table.add_row("mask head", f"{m.mask_head.num_conv} conv x {m.mask_head.conv_dim}, "
                               f"{'class-agnostic' if m.mask_head.cls_agnostic_mask else 'class-specific'} 28x28 masks")
    table.add_row("test", f"score > {m.roi_heads.score_thresh_test}, NMS {m.roi_heads.nms_thresh_test}, "
                          f"max {m.roi_heads.detections_per_image} detections")
    table.add_row("input", f"{m.input.format}, short side {m.input.min_size_test}, max {m.input.max_size_test}, "
                           f"mean {list(m.pixel_mean)}, std {list(m.pixel_std)}, pad to /{m.size_divisibility}")
    table.add_row("parameters", f"{params:,} ({params * 4 / 2**20:.1f} MiB as float32)")
    names = ", ".join(cfg.class_names)
    table.add_row("classes", f"{m.num_classes}: {names}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(info)
