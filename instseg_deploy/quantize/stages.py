"""Which nodes of an exported graph belong to which network stage, and which must stay float.

``instseg export`` names nodes after the PyTorch modules they come from; the stage prefixes are
defined next to the export wrapper (``export.stage_names``) and read from there. Everything that
is not inside a network stage -- anchor decoding, top-k, NMS, RoIAlign and its level assignment,
in-graph mask pasting -- is post-processing arithmetic on coordinates and is always kept in float.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from instseg_deploy.export.stage_names import STAGE_PREFIXES, stage_of
from instseg_deploy.model_file.onnx_edit import INTEGER_LAYER_OPS

STAGES: tuple[str, ...] = tuple(STAGE_PREFIXES)  # stage names, in network order

# Layers whose outputs feed coordinates, NMS or the final masks directly. Quantizing them saves
# almost nothing (1x1 convs and small fully-connected layers) and costs accuracy.
SENSITIVE_LAYERS: dict[str, str] = {
    "rpn_head/anchor_deltas": "RPN box deltas: decoded into proposal coordinates",
    "rpn_head/objectness_logits": "RPN scores: top-k and NMS inputs",
    "box_predictor/bbox_pred": "box deltas: decoded into the final box coordinates",
    "box_predictor/cls_score": "class scores: NMS inputs and reported scores",
    "mask_head/predictor": "final mask logits",
}

# Operators whose inputs get Q/DQ: every integer layer (weights per-channel quantized, a ConvTranspose's
# on its output-channel axis 1). The mask head's 2x2 deconvolution is about 6% of R50-FPN's CPU time.
QUANTIZED_OP_TYPES = INTEGER_LAYER_OPS
# Quantized layers whose output stays float. The deconvolution feeds only the float mask predictor, and
# ONNX Runtime has no integer ConvTranspose kernel: a Q/DQ on its output would only round it (and cost
# ORT two passes over 100x256x28x28 values).
FLOAT_OUTPUT_OP_TYPES = ("ConvTranspose",)


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern]:
    from instseg_deploy.errors import InstsegError

    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as e:
            raise InstsegError(f"--exclude {p!r} is not a valid regular expression ({e})") from None
    return compiled


def float_nodes(nodes, op_types: Iterable[str], extra_patterns: Iterable[str] = (),
                keep_sensitive: bool = True) -> list[str]:
    """Names of the nodes of ``op_types`` that must stay float.

    Those outside every network stage (post-processing), the sensitive layers unless
    ``keep_sensitive`` is False, and those matching any of ``extra_patterns`` (regular
    expressions searched in the node name).
    """
    op_types = set(op_types)
    patterns = compile_patterns(list(extra_patterns) + (list(SENSITIVE_LAYERS) if keep_sensitive else []))
    return [n.name for n in nodes if n.op_type in op_types
            and (stage_of(n.name) is None or any(p.search(n.name) for p in patterns))]


def stage_nodes(nodes, stage: str, op_types: Iterable[str]) -> list[str]:
    """Names of the nodes of ``op_types`` in ``stage``."""
    op_types = set(op_types)
    return [n.name for n in nodes if n.op_type in op_types and stage_of(n.name) == stage]


def has_stage_names(nodes) -> bool:
    """True when the graph carries the node names ``instseg export`` writes."""
    return any(stage_of(n.name) is not None for n in nodes)
