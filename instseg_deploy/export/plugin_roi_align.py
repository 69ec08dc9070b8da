"""Export multi-level RoIAlign as one InstsegMultilevelRoIAlign node (our TensorRT plugin).

The plugin flavour traces a view of the detector whose ROI heads pool through
:class:`PluginMultilevelRoIAlign`: an autograd Function whose forward is the real computation (so
tracing sees real values) and whose ONNX symbolic is the one node TensorRT's parser maps to the
plugin by op_type / plugin_version / plugin_namespace. The user's model is not modified.
"""

from __future__ import annotations

import torch

from instseg_deploy.config.types import PoolerConfig
from instseg_deploy.errors import InstsegError
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.modeling.poolers import MultilevelRoIAlign, multilevel_roi_align
from instseg_deploy.ops.roi_align_contract import (
    ONNX_DOMAIN,
    ONNX_DOMAIN_VERSION,
    OP_TYPE,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
)

OPSET_IMPORT = {ONNX_DOMAIN: ONNX_DOMAIN_VERSION}
PLUGIN_LEVELS = 4  # the plugin pools from exactly four FPN levels (P2..P5)


class _MultilevelRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rois, p2, p3, p4, p5, output_size, sampling_ratio, aligned, canonical_box_size,
                canonical_level, strides):
        cfg = PoolerConfig(output_size, sampling_ratio, bool(aligned), canonical_box_size, canonical_level)
        return multilevel_roi_align([p2, p3, p4, p5], rois, list(strides), cfg)

    @staticmethod
    def symbolic(g, rois, p2, p3, p4, p5, output_size, sampling_ratio, aligned, canonical_box_size,
                 canonical_level, strides):
        out = g.op(f"{ONNX_DOMAIN}::{OP_TYPE}", rois, p2, p3, p4, p5, output_size_i=output_size,
                   sampling_ratio_i=sampling_ratio, aligned_i=int(aligned), canonical_box_size_i=canonical_box_size,
                   canonical_level_i=canonical_level, featmap_strides_i=list(strides),
                   plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
        # Tell the exporter's shape inference what comes out: (R, C, size, size), the features' dtype.
        channels = p2.type().sizes()[1] if p2.type().sizes() else None
        out.setType(p2.type().with_sizes([None, channels, output_size, output_size]))
        return out


class PluginMultilevelRoIAlign(MultilevelRoIAlign):
    """Same contract as :class:`MultilevelRoIAlign`, traced as one plugin node.

    forward(features, rois): features [(N, C, Hl, Wl)] for P2..P5, rois (R, 5) -> (R, C, S, S).
    """

    def __init__(self, strides: list[int], cfg: PoolerConfig):
        if len(strides) != PLUGIN_LEVELS:
            raise InstsegError(f"--roi-align plugin pools from exactly {PLUGIN_LEVELS} FPN levels (P2..P5); "
                               f"this model's ROI heads use {len(strides)} (strides {list(strides)}): "
                               "export with --roi-align onnx")
        super().__init__(strides, cfg)

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return _MultilevelRoIAlign.apply(rois, *features, c.resolution, c.sampling_ratio, int(c.aligned),
                                         c.canonical_box_size, c.canonical_level, tuple(self.strides))


def with_plugin_poolers(model: MaskRCNN) -> MaskRCNN:
    """A view of ``model`` (left unchanged) whose ROI heads pool through the plugin node.

    The plugin computes the standard multi-level RoIAlign, so it replaces only poolers of that
    kind, keeping their strides and settings.
    """
    heads = model.roi_heads
    poolers = []
    for name in ("box_pooler", "mask_pooler"):
        pooler = getattr(heads, name)
        if type(pooler) is not MultilevelRoIAlign:
            raise InstsegError(f"--roi-align plugin replaces the standard multi-level RoIAlign, but the ROI heads' "
                               f"{name} is a {type(pooler).__name__}: export with --roi-align onnx")
        poolers.append(PluginMultilevelRoIAlign(pooler.strides, pooler.cfg))
    return model.with_roi_poolers(*poolers)
