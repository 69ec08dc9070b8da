"""The FLOP count the benchmark reports, pinned on the tiny model at a fixed input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from instseg_deploy.bench.flops import count_gflops, mask_head_gflops
from instseg_deploy.config import load_config
from instseg_deploy.modeling import build_model
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess

# count_gflops of the model and input below, recorded once (torch 2.x FlopCounterMode, by running
# this file's setup and printing the count): 2.75082656. Convs, matmuls and linears of the backbone,
# FPN and RPN head at 320x448, the box head on 300 proposals and the mask head on 100 detections.
TINY_GFLOPS = 2.75082656


@pytest.fixture(scope="module")
def model_and_batch(tiny_config_path):
    """The tiny model with no data-dependent sizes, so its FLOPs depend on the architecture and
    the input size alone: NMS thresholds of 1.0 and a score threshold of 0 keep every candidate,
    and zero RPN deltas make the proposals the (clipped, non-empty) anchors -- exactly 300
    proposals (POST_NMS_TOPK_TEST) and 100 detections (the per-image cap), whatever the weights."""
    cfg = load_config(tiny_config_path).model
    cfg = dataclasses.replace(
        cfg, rpn=dataclasses.replace(cfg.rpn, nms_thresh=1.0),
        roi_heads=dataclasses.replace(cfg.roi_heads, score_thresh_test=0.0, nms_thresh_test=1.0))
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.proposal_generator.rpn_head.anchor_deltas.weight.zero_()
        model.proposal_generator.rpn_head.anchor_deltas.bias.zero_()
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)  # -> 320x427, padded 320x448
    return model, image, PreprocessParams.from_model_config(cfg)


def test_sizes_are_fixed(model_and_batch):
    model, image, params = model_and_batch
    batch = preprocess([image], params)
    assert batch.images.shape == (1, 3, 320, 448)
    with torch.inference_mode():
        detections, proposals = model.inference(torch.from_numpy(batch.images), torch.from_numpy(batch.image_sizes))
    assert (len(proposals.boxes), len(detections.boxes)) == (300, 100)


def test_tiny_model_gflops_match_the_recorded_count(model_and_batch):
    model, image, params = model_and_batch
    assert count_gflops(model, preprocess([image], params)).at(100) == pytest.approx(TINY_GFLOPS, rel=0.05)


def test_gflops_are_per_image(model_and_batch):
    model, image, params = model_and_batch
    assert count_gflops(model, preprocess([image, image], params)).at(100) == pytest.approx(TINY_GFLOPS, rel=0.05)


def test_the_mask_head_is_counted_per_detection(model_and_batch):
    model, image, params = model_and_batch
    head = model.cfg.mask_head
    side, channels = head.pooler.resolution, model.cfg.fpn.out_channels
    # 3x3 convs at side x side, the 2x2 stride-2 deconvolution to 2*side, the 1x1 predictor (K classes)
    convs = head.num_conv * 2 * 9 * channels * head.conv_dim * side * side
    deconv = 2 * 4 * head.conv_dim * head.conv_dim * side * side
    predictor = 2 * head.conv_dim * model.cfg.roi_heads.num_classes * (2 * side) ** 2
    assert mask_head_gflops(model) == pytest.approx((convs + deconv + predictor) / 1e9, rel=1e-6)


def test_the_count_for_given_detections_does_not_depend_on_how_many_the_weights_make(model_and_batch):
    """A model making no detections (score threshold 1) counts the same for a backend's 100 as one making 100."""
    model, image, params = model_and_batch
    batch = preprocess([image], params)
    every = count_gflops(model, batch)
    heads, keep = model.roi_heads, model.roi_heads.cfg
    heads.cfg = dataclasses.replace(keep, score_thresh_test=1.0)
    try:
        with torch.inference_mode():
            detections, _ = model.inference(torch.from_numpy(batch.images), torch.from_numpy(batch.image_sizes))
        none = count_gflops(model, batch)
    finally:
        heads.cfg = keep
    assert len(detections.scores) == 0
    assert none.at(100) == pytest.approx(every.at(100), rel=1e-6) and none.fixed == pytest.approx(every.fixed)
