"""One default score threshold (issue 21): the Python API keeps detections >= DEFAULT_SCORE_THRESH like
`instseg predict`; score_thresh=None is the model's own; eval, bench and quantize's analysis use the
model's own, so their AP and detection counts are those of every detection the model makes."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.cli.main import app
from instseg_deploy.config import load_config
from instseg_deploy.data.coco import load_coco_dataset
from instseg_deploy.data.synth import generate
from instseg_deploy.evaluation.dataset_ap import dataset_ap
from instseg_deploy.image_io import read_image
from instseg_deploy.modeling import build_model
from instseg_deploy.runtime import load_predictor
from instseg_deploy.runtime.factory import DEFAULT_SCORE_THRESH

runner = CliRunner()
MODEL_THRESH = 0.05  # the tiny config's MODEL.ROI_HEADS.SCORE_THRESH_TEST (detectron2's default)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_config_path):
    """An untrained tiny model whose class scores spread over 0.05..0.75 (a small cls_score weight
    scale; untrained weights of the default scale give scores of 1.0), as an instseg .pth; and a
    3-image generated COCO set."""
    root = tmp_path_factory.mktemp("score_thresh")
    cfg = load_config(tiny_config_path)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.normal_(std=5e-4)
    weights = root / "tiny.pth"
    save_checkpoint(weights, model, cfg.raw, ("disc", "square", "triangle", "ring"))
    annotations = generate(root / "shapes", 3, seed=0, image_size=(64, 96), max_instances=3)["all"]
    return weights, annotations.parent / "images", annotations


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    net, cfg = load_model(None, tiny[0])
    return export_onnx(net, cfg, tmp_path_factory.mktemp("score_thresh_onnx") / "tiny.onnx").path


def _scores(predictor, images) -> list[np.ndarray]:
    return [np.sort(predictor(read_image(p)[0]).scores) for p in sorted(images.iterdir())]


def test_api_default_keeps_detections_at_or_above_the_one_default(tiny):
    weights, images, _ = tiny
    assert DEFAULT_SCORE_THRESH == 0.5
    assert inspect.signature(load_predictor).parameters["score_thresh"].default == DEFAULT_SCORE_THRESH
    default = _scores(load_predictor("torch", weights=weights, mask_format="none"), images)
    own = _scores(load_predictor("torch", weights=weights, mask_format="none", score_thresh=None), images)
    every = np.concatenate(own)
    assert every.min() < DEFAULT_SCORE_THRESH <= every.max()  # the model makes scores on both sides
    assert every.min() >= MODEL_THRESH
    for kept, all_of_image in zip(default, own):
        np.testing.assert_array_equal(kept, all_of_image[all_of_image >= DEFAULT_SCORE_THRESH])
    assert sum(map(len, default)) < len(every)


def test_none_is_the_models_own_threshold_from_its_config(tiny):
    weights, images, _ = tiny
    raised = _scores(load_predictor("torch", weights=weights, mask_format="none", score_thresh=None,
                                    overrides=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.2"]), images)
    every = np.concatenate(raised)
    assert every.min() >= 0.2 and (every < DEFAULT_SCORE_THRESH).any()


def test_exported_model_default_and_its_baked_threshold(tiny, tiny_onnx):
    images, onnx_path = tiny[1], tiny_onnx
    default = np.concatenate(_scores(load_predictor("ort", model=onnx_path, mask_format="none"), images))
    own = np.concatenate(_scores(load_predictor("ort", model=onnx_path, mask_format="none", score_thresh=None),
                                 images))
    assert default.size and default.min() >= DEFAULT_SCORE_THRESH
    assert MODEL_THRESH <= own.min() < DEFAULT_SCORE_THRESH and own.size > default.size


def test_a_file_baked_above_the_default_keeps_its_own(tiny, tmp_path):
    """The default cannot go below an exported file's threshold: it gives the file's own; asking for
    less is the error it always was."""
    from instseg_deploy.errors import InstsegError
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    weights, images, _ = tiny
    net, cfg = load_model(None, weights, overrides=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.6"])
    onnx_path = export_onnx(net, cfg, tmp_path / "baked_0.6.onnx").path
    kept = np.concatenate(_scores(load_predictor("ort", model=onnx_path, mask_format="none"), images))
    assert kept.size and kept.min() >= 0.6
    with pytest.raises(InstsegError, match=r"--score-thresh 0.3 is below the threshold baked into .* \(0.6\)"):
        load_predictor("ort", model=onnx_path, score_thresh=0.3)


def test_eval_scores_every_detection_the_model_makes(tiny, tmp_path):
    """`instseg eval` passes score_thresh=None: its detections and AP are those of the model's own
    threshold, not of the API's default."""
    weights, images, annotations = tiny
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--weights", str(weights), "--images", str(images),
                                 "--annotations", str(annotations), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    dataset = load_coco_dataset(images, annotations)
    own = dataset_ap(load_predictor("torch", weights=weights, mask_format="rle", score_thresh=None), dataset)
    default = dataset_ap(load_predictor("torch", weights=weights, mask_format="rle"), dataset)
    written = json.loads((out / "detections.json").read_text())
    assert len(default.detections) < len(own.detections) == len(written)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {t: m["AP"] for t, m in metrics.items()} == pytest.approx(own.ap())


def test_bench_rows_and_sensitivity_keep_the_models_own_threshold(tiny, tiny_onnx, tmp_path):
    from instseg_deploy.quantize.sensitivity import _predict_images

    weights, images, _ = tiny
    paths = sorted(images.iterdir())
    own = load_predictor("torch", weights=weights, mask_format="none", score_thresh=None)
    per_image = np.mean([len(own(read_image(p)[0])) for p in paths])
    result = runner.invoke(app, ["bench", "--backend", "torch", "--weights", str(weights), "--images", str(images),
                                 "--threads", "1", "--warmup", "0", "--iters", str(len(paths)),
                                 "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert row["detections_per_image"] == pytest.approx(per_image)  # every image once

    found = np.concatenate([i.scores for i in _predict_images(tiny_onnx, paths, None)])
    assert found.min() < DEFAULT_SCORE_THRESH  # compared with FP32 on every detection, not the API's default
