"""The torch model reproduces real detectron2's outputs (golden files made with detectron2)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from golden import D2, golden_images, load_golden
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.evaluation.parity import match_detections
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.runtime.torch_model import load_model
from instseg_deploy.runtime.torch_runner import TorchRunner
from instseg_deploy.structures import Instances

GOLDEN = golden_images()


def _predictor(model, cfg) -> Predictor:
    return Predictor(TorchRunner(model), PreprocessParams.from_model_config(cfg.model), cfg.class_names)


# The model-zoo .pkl ships with the package (demo data); the trainer's .pth is a test fixture only.
@pytest.fixture(scope="module", ids=["model_final.pkl", "model_final.pth"],
                params=[DEMO_DATA / "shapes_r50" / "model_final.pkl", D2 / "shapes_r50" / "model_final.pth"])
def predictor_and_model(request):
    model, cfg = load_model(DEMO_DATA / "shapes_r50" / "config.yaml", request.param)
    return _predictor(model, cfg), model


def test_pkl_and_pth_hold_the_same_weights(fixture_model):
    from instseg_deploy.checkpoint import read_checkpoint

    pkl = read_checkpoint(DEMO_DATA / "shapes_r50" / "model_final.pkl")
    pth = read_checkpoint(D2 / "shapes_r50" / "model_final.pth")
    assert pkl.kind == "detectron2-pkl" and pth.kind == "detectron2-pth"
    assert pth.extra["iteration"] == 2999
    assert set(pkl.state_dict) == set(pth.state_dict)
    for k in pkl.state_dict:
        assert torch.equal(pkl.state_dict[k].reshape(pth.state_dict[k].shape), pth.state_dict[k]), k


def test_detections_match_detectron2(predictor_and_model):
    predictor, _ = predictor_and_model
    total = matched = 0
    worst_mask_iou = 1.0
    for stem, path in GOLDEN:
        ref, _ = load_golden(stem)
        ours = predictor(cv2.imread(str(path)))
        report = match_detections(ref, ours)
        total += max(len(ref), len(ours))
        matched += report.matched
        worst_mask_iou = min(worst_mask_iou, report.min_mask_iou)
    assert total > 300  # the golden set really has detections to compare
    assert matched / total >= 0.99
    assert worst_mask_iou >= 0.98


def test_top_proposals_match_detectron2(predictor_and_model):
    predictor, model = predictor_and_model
    for stem, path in GOLDEN:
        _, extra = load_golden(stem)
        batch = preprocess([cv2.imread(str(path))], predictor.params)
        assert tuple(batch.image_sizes[0]) == tuple(extra["input_hw"])
        with torch.inference_mode():
            _, proposals = model.inference(torch.from_numpy(batch.images), torch.from_numpy(batch.image_sizes))
        n = 100
        ref = Instances((0, 0), extra["proposals"][:n], extra["objectness"][:n], np.zeros(n, np.int64))
        ours = Instances((0, 0), proposals.boxes[:n].numpy(), proposals.logits[:n].numpy(), np.zeros(n, np.int64))
        report = match_detections(ref, ours, min_box_iou=0.99, max_score_diff=1e-2)
        assert report.matched == n, f"{stem}: {report.matched}/{n} top proposals matched"


def test_raw_mask_probs_and_network_boxes_match(fixture_model):
    model, cfg = fixture_model
    predictor = _predictor(model, cfg)
    stem, path = GOLDEN[0]
    ref, _ = load_golden(stem)
    ours = predictor(cv2.imread(str(path)))
    report = match_detections(ref, ours)
    r, c = np.array(report.pairs).T
    np.testing.assert_allclose(ours.boxes_net[c], ref.boxes_net[r], atol=1e-2)
    np.testing.assert_allclose(ours.mask_probs[c], ref.mask_probs[r], atol=1e-3)
