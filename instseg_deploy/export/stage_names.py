"""Node-name prefixes of the network stages in a graph ``instseg export`` writes.

torch.onnx names each node after the module path it was traced in, starting from the exported
:class:`~instseg_deploy.export.graph.ExportableMaskRCNN`, which holds the detector as ``self.model``:
a conv of ResNet's res3 becomes ``/model/backbone/bottom_up/res3/res3.1/conv2/Conv``. The ROI
heads run through ``StandardROIHeads.inference``, a plain method rather than a module call, so
their box and mask heads appear directly under ``/model/``. Everything outside these prefixes
(anchor decoding, top-k, NMS, the RoI poolers, mask pasting) is coordinate arithmetic; INT8 and
FP16 placement (``quantize.stages``) keeps it float.
"""

from __future__ import annotations

DETECTOR_SCOPE = "/model/"  # ExportableMaskRCNN.model

# Stage -> prefixes of its node names, in network order.
STAGE_PREFIXES: dict[str, tuple[str, ...]] = {
    "backbone": (f"{DETECTOR_SCOPE}backbone/bottom_up/",),
    "fpn": (f"{DETECTOR_SCOPE}backbone/fpn_",),  # fpn_lateral{2..5}, fpn_output{2..5}
    "rpn_head": (f"{DETECTOR_SCOPE}proposal_generator/rpn_head/",),
    "box_head": (f"{DETECTOR_SCOPE}box_head/", f"{DETECTOR_SCOPE}box_predictor/"),
    "mask_head": (f"{DETECTOR_SCOPE}mask_head/",),
}


def stage_of(node_name: str) -> str | None:
    """The stage whose prefix ``node_name`` starts with, or None (post-processing)."""
    for stage, prefixes in STAGE_PREFIXES.items():
        if node_name.startswith(prefixes):
            return stage
    return None
