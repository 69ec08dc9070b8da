"""The ROI heads pool through the poolers they are given; the plugin flavour is a view, not a patch."""

from __future__ import annotations

import pytest
import torch

from instseg_deploy.config import load_config
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.graph import ExportableMaskRCNN
from instseg_deploy.export.plugin_roi_align import PluginMultilevelRoIAlign, with_plugin_poolers
from instseg_deploy.modeling import build_model
from instseg_deploy.modeling.poolers import MultilevelRoIAlign
from instseg_deploy.modeling.roi_heads import StandardROIHeads


@pytest.fixture(scope="module")
def tiny_model(tiny_config_path):
    torch.manual_seed(0)
    return build_model(load_config(tiny_config_path).model)


@pytest.fixture(scope="module")
def tiny_inputs():
    images = torch.rand((2, 3, 256, 320), generator=torch.Generator().manual_seed(1)) * 255
    return images, torch.tensor([[256, 320], [224, 288]])


def test_default_poolers_are_the_configs_multilevel_roi_align(tiny_model):
    heads, cfg = tiny_model.roi_heads, tiny_model.cfg
    assert type(heads.box_pooler) is MultilevelRoIAlign and type(heads.mask_pooler) is MultilevelRoIAlign
    assert heads.box_pooler.cfg == cfg.box_head.pooler and heads.mask_pooler.cfg == cfg.mask_head.pooler
    assert heads.box_pooler.strides == heads.mask_pooler.strides == [4, 8, 16, 32]
    assert (heads.box_pooler.cfg.resolution, heads.mask_pooler.cfg.resolution) == (7, 14)


def test_poolers_hold_no_state_so_checkpoint_names_stay_detectron2s(tiny_model):
    for pooler in (tiny_model.roi_heads.box_pooler, tiny_model.roi_heads.mask_pooler):
        assert not list(pooler.parameters()) and not list(pooler.buffers())
    keys = tiny_model.state_dict().keys()
    assert not [k for k in keys if "pooler" in k]
    assert "roi_heads.box_predictor.cls_score.weight" in keys and "roi_heads.mask_head.predictor.weight" in keys


def test_heads_use_the_pooler_they_are_given(tiny_model):
    """A pooler passed to the constructor is the one that runs (here: one that records its calls)."""
    calls = []

    class RecordingPooler(MultilevelRoIAlign):
        def forward(self, features, rois):
            calls.append((self.cfg.resolution, tuple(rois.shape)))
            return super().forward(features, rois)

    cfg = tiny_model.cfg
    strides = tiny_model.roi_heads.strides
    heads = StandardROIHeads(cfg.roi_heads, cfg.box_head, cfg.mask_head, tiny_model.backbone.out_channels, strides,
                             box_pooler=RecordingPooler(strides, cfg.box_head.pooler),
                             mask_pooler=RecordingPooler(strides, cfg.mask_head.pooler))
    heads.load_state_dict(tiny_model.roi_heads.state_dict())  # same names with or without custom poolers
    features = [torch.rand((1, 32, 64 // s, 64 // s)) for s in (1, 2, 4, 8)]
    boxes = torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 0.0, 60.0, 64.0]])
    logits, _ = heads.box_features(features, boxes, torch.zeros(2, dtype=torch.int64))
    heads.mask_logits(features, boxes, torch.zeros(2, dtype=torch.int64))
    assert logits.shape == (2, cfg.roi_heads.num_classes + 1)
    assert calls == [(7, (2, 5)), (14, (2, 5))]


def test_plugin_view_shares_weights_and_leaves_the_model_alone(tiny_model, tiny_inputs):
    view = with_plugin_poolers(tiny_model)
    assert isinstance(view.roi_heads.box_pooler, PluginMultilevelRoIAlign)
    assert isinstance(view.roi_heads.mask_pooler, PluginMultilevelRoIAlign)
    assert view.roi_heads.mask_pooler.cfg == tiny_model.roi_heads.mask_pooler.cfg
    # the user's model still pools with the standard RoIAlign
    assert type(tiny_model.roi_heads.box_pooler) is MultilevelRoIAlign
    assert type(tiny_model.roi_heads.mask_pooler) is MultilevelRoIAlign
    ours, theirs = dict(view.named_parameters()), dict(tiny_model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[k] is theirs[k] for k in ours)  # the very same tensors: nothing copied
    assert view.state_dict().keys() == tiny_model.state_dict().keys()
    # outside tracing the plugin pooler computes the standard RoIAlign: the same detections
    with torch.no_grad():
        ours, theirs = view(*tiny_inputs), tiny_model(*tiny_inputs)
    assert len(theirs[0]) > 0 and set(theirs[3].tolist()) == {0, 1}  # detections in both images
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_export_wrapper_builds_its_own_view(tiny_model):
    wrapper = ExportableMaskRCNN(tiny_model, roi_align="plugin")
    assert wrapper.model is not tiny_model and wrapper.model.backbone is tiny_model.backbone
    assert isinstance(wrapper.model.roi_heads.box_pooler, PluginMultilevelRoIAlign)
    assert type(tiny_model.roi_heads.box_pooler) is MultilevelRoIAlign
    assert ExportableMaskRCNN(tiny_model).model is tiny_model
    with pytest.raises(ValueError, match="roi_align"):
        ExportableMaskRCNN(tiny_model, roi_align="tensorrt")


def test_plugin_flavour_refuses_what_the_plugin_cannot_compute(tiny_model):
    cfg = tiny_model.cfg
    with pytest.raises(InstsegError, match="exactly 4 FPN levels"):
        PluginMultilevelRoIAlign([8, 16, 32], cfg.box_head.pooler)

    class OtherPooler(MultilevelRoIAlign):
        pass

    view = tiny_model.with_roi_poolers(OtherPooler([4, 8, 16, 32], cfg.box_head.pooler),
                                       tiny_model.roi_heads.mask_pooler)
    with pytest.raises(InstsegError, match="box_pooler is a OtherPooler"):
        with_plugin_poolers(view)
