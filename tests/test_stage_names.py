"""The stage-name prefixes INT8/FP16 placement relies on match the graphs `instseg export` writes."""

from __future__ import annotations

import onnx
import pytest
import torch

from instseg_deploy.class_names import default_class_names
from instseg_deploy.config import load_config
from instseg_deploy.export.graph import ExportableMaskRCNN
from instseg_deploy.export.onnx_export import export_onnx
from instseg_deploy.export.stage_names import DETECTOR_SCOPE, STAGE_PREFIXES, stage_of
from instseg_deploy.modeling import build_model
from instseg_deploy.quantize.stages import QUANTIZED_OP_TYPES, STAGES

WEIGHT_OPS = ("Conv", "Gemm")  # every layer with weights; MatMul also appears in in-graph mask pasting


@pytest.fixture(scope="module")
def tiny(tiny_config_path):
    cfg = load_config(tiny_config_path)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def test_prefixes_name_modules_of_the_export_wrapper(tiny):
    """Each prefix is a module path under ExportableMaskRCNN (the ROI heads' children sit directly
    under the detector's scope because StandardROIHeads.inference is a plain method)."""
    modules = dict(ExportableMaskRCNN(tiny[0]).named_modules())
    heads = dict(tiny[0].roi_heads.named_children())
    for stage, prefixes in STAGE_PREFIXES.items():
        for prefix in prefixes:
            assert prefix.startswith(DETECTOR_SCOPE)
            path = prefix.strip("/").replace("/", ".")
            if prefix.endswith("/"):
                found = path in modules or (path.count(".") == 1 and path.split(".")[1] in heads)
            else:  # a name prefix of sibling modules, like fpn_lateral2 .. fpn_output5
                found = any(name.startswith(path) for name in modules)
            assert found, f"{stage}: {prefix!r} names no module"


def test_quantize_reads_the_export_prefixes():
    assert STAGES == tuple(STAGE_PREFIXES)
    assert stage_of("/model/backbone/bottom_up/res3/res3.1/conv2/Conv") == "backbone"
    assert stage_of("/model/backbone/fpn_output3/Conv") == "fpn"
    assert stage_of("/model/box_predictor/cls_score/Gemm") == "box_head"
    assert stage_of("/model/box_pooler/RoiAlign") is None
    assert stage_of("/backbone/bottom_up/res3/Conv") is None  # anchored at the detector's scope


@pytest.mark.parametrize("roi_align", ["onnx", "plugin"])
def test_every_weight_layer_of_an_export_is_in_a_stage(tiny, tmp_path, roi_align):
    """Renaming a module (or the wrapper's ``model``) would leave layers outside every stage:
    they would silently stay float in INT8/FP16 builds."""
    model, cfg = tiny
    path = export_onnx(model, cfg, tmp_path / "m.onnx", roi_align=roi_align).path  # simplified, as shipped
    nodes = onnx.load(str(path)).graph.node
    weight_nodes = [n for n in nodes if n.op_type in WEIGHT_OPS]
    assert len(weight_nodes) > 70
    assert [n.name for n in weight_nodes if stage_of(n.name) is None] == []
    found = {stage_of(n.name) for n in nodes if n.op_type in QUANTIZED_OP_TYPES}
    assert found == set(STAGE_PREFIXES)
