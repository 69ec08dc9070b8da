"""Export multi-level RoIAlign as one InstsegMultilevelRoIAlign node (our TensorRT plugin).

While tracing, the ROI heads' pooler is swapped for an autograd Function whose forward is
the real computation (so tracing sees real values) and whose ONNX symbolic is the one node
TensorRT's parser maps to the plugin by op_type / plugin_version / plugin_namespace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from instseg_deploy.config.types import PoolerConfig
from instseg_deploy.modeling import poolers, roi_heads
from instseg_deploy.ops.ort_custom_op import OP_DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

OPSET_IMPORT = {OP_DOMAIN: 1}


class _MultilevelRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rois, p2, p3, p4, p5, output_size, sampling_ratio, aligned, canonical_box_size,
                canonical_level, strides):
        cfg = PoolerConfig(output_size, sampling_ratio, bool(aligned), canonical_box_size, canonical_level)
        return poolers.multilevel_roi_align([p2, p3, p4, p5], rois, list(strides), cfg)

    @staticmethod
    def symbolic(g, rois, p2, p3, p4, p5, output_size, sampling_ratio, aligned, canonical_box_size,
                 canonical_level, strides):
        out = g.op(f"{OP_DOMAIN}::{OP_TYPE}", rois, p2, p3, p4, p5, output_size_i=output_size,
                   sampling_ratio_i=sampling_ratio, aligned_i=int(aligned), canonical_box_size_i=canonical_box_size,
                   canonical_level_i=canonical_level, featmap_strides_i=list(strides),
                   plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
        # Tell the exporter's shape inference what comes out: (R, C, size, size), the features' dtype.
        channels = p2.type().sizes()[1] if p2.type().sizes() else None
        out.setType(p2.type().with_sizes([None, channels, output_size, output_size]))
        return out


def plugin_multilevel_roi_align(features: list[torch.Tensor], rois: torch.Tensor, strides: list[int],
                                cfg: PoolerConfig) -> torch.Tensor:
    """Same contract as :func:`poolers.multilevel_roi_align`, traced as one plugin node."""
    if len(features) != 4:
        raise ValueError("the RoIAlign plugin pools from exactly four FPN levels (P2..P5)")
    return _MultilevelRoIAlign.apply(rois, *features, cfg.resolution, cfg.sampling_ratio, int(cfg.aligned),
                                     cfg.canonical_box_size, cfg.canonical_level, tuple(strides))


@contextlib.contextmanager
def patched_multilevel_roi_align() -> Iterator[None]:
    original = roi_heads.multilevel_roi_align
    roi_heads.multilevel_roi_align = plugin_multilevel_roi_align
    try:
        yield
    finally:
        roi_heads.multilevel_roi_align = original
