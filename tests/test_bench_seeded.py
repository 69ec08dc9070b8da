"""Seeded benchmark weights do a trained model's work: standardized batch norms, capped proposals and detections."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import D2, REPO
from instseg_deploy.bench.seeded import BATCH_NORMS, seeded_model, standardize_batch_norms
from instseg_deploy.config import load_config
from instseg_deploy.image_io import read_image
from instseg_deploy.modeling import build_model
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess

R50 = REPO / "configs" / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_3x.yaml"


@pytest.fixture(scope="module")
def r50_and_batch():
    """R50-FPN-3x at a small test size (the benchmark uses 800x1333) and one photo."""
    cfg = load_config(R50).model
    image = read_image(D2 / "photos" / "coffee.png")[0]
    params = dataclasses.replace(PreprocessParams.from_model_config(cfg), min_size=256, max_size=384)
    return cfg, preprocess([image], params)


@pytest.fixture(scope="module")
def seeded(r50_and_batch):
    return seeded_model(*r50_and_batch)


def _run(model, batch):
    with torch.inference_mode():
        return model.inference(torch.from_numpy(batch.images), torch.from_numpy(batch.image_sizes))


def _norm_outputs(model, batch) -> list[torch.Tensor]:
    outputs = []  # copies: the activation after a norm runs in place
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.clone())) for m in model.modules()
             if isinstance(m, BATCH_NORMS)]
    try:
        _run(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def test_every_batch_norm_output_is_standardized_on_the_image(r50_and_batch, seeded):
    outputs = _norm_outputs(seeded, r50_and_batch[1])
    assert len(outputs) == 53  # the stem, 16 bottlenecks x 3 and 4 shortcut projections
    for out in outputs:
        assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-3
        assert out.var(dim=(0, 2, 3)).sub(1).abs().max() < 1e-3


def test_seeded_weights_give_the_capped_proposals_and_detections_where_initial_weights_do_not(r50_and_batch, seeded):
    cfg, batch = r50_and_batch
    torch.manual_seed(0)
    detections, proposals = _run(build_model(cfg).eval(), batch)
    assert len(proposals.boxes) < cfg.rpn.post_nms_topk_test  # the failure the module exists for
    detections, proposals = _run(seeded, batch)
    assert len(proposals.boxes) == cfg.rpn.post_nms_topk_test == 1000
    assert len(detections.scores) == cfg.roi_heads.detections_per_image == 100


def test_seeded_weights_are_reproducible_and_leave_no_hook(r50_and_batch, seeded):
    cfg, batch = r50_and_batch
    torch.manual_seed(0)
    again = build_model(cfg).eval()
    assert standardize_batch_norms(again, batch) == 53
    assert all(torch.equal(value, again.state_dict()[name]) for name, value in seeded.state_dict().items())
    assert all(not m._forward_pre_hooks for m in seeded.modules())


def test_norms_that_see_no_values_keep_their_statistics_and_training_mode_is_refused(tiny_config_path):
    """The tiny model's BatchNorm2d layers, and a mask head with norms that gets no detections."""
    cfg = load_config(tiny_config_path, ["MODEL.ROI_MASK_HEAD.NORM", "BN"]).model
    cfg = dataclasses.replace(cfg, roi_heads=dataclasses.replace(cfg.roi_heads, score_thresh_test=1.0))  # none kept
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = preprocess([read_image(D2 / "photos" / "coffee.png")[0]], PreprocessParams.from_model_config(cfg))
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    in_mask_head = [m for m in model.roi_heads.mask_head.modules() if isinstance(m, BATCH_NORMS)]
    assert in_mask_head and all(isinstance(m, torch.nn.BatchNorm2d) for m in norms)
    assert standardize_batch_norms(model, batch) == len(norms) - len(in_mask_head)
    for norm in in_mask_head:
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert torch.equal(norm.running_var, torch.ones_like(norm.running_var))
    assert all(torch.isfinite(m.running_var).all() and torch.isfinite(m.running_mean).all() for m in norms)
    with pytest.raises(ValueError, match="eval mode"):
        standardize_batch_norms(model.train(), batch)


def test_bench_flops_of_an_export_without_weights_match_its_trained_checkpoint(fixture_model, exported_onnx):
    """`instseg bench --model x.onnx` counts FLOPs on the architecture with initial weights: standardized,
    its ROI heads do the trained model's work (real detectron2 kept 1000 proposals on every golden image)."""
    from instseg_deploy.bench.flops import count_gflops
    from instseg_deploy.bench.models import flops_model

    trained, _ = fixture_model
    batch = preprocess([read_image(D2 / "photos" / "coffee.png")[0]], PreprocessParams.from_model_config(trained.cfg))
    expected = count_gflops(trained, batch).fixed
    architecture = flops_model(None, None, [exported_onnx["raw"]])
    assert count_gflops(architecture, batch).fixed < 0.95 * expected  # initial weights: too few proposals
    standardize_batch_norms(architecture, batch)
    assert count_gflops(architecture, batch).fixed == pytest.approx(expected, rel=1e-3)
