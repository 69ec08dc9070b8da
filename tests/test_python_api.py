"""The Python API as a detectron2 user calls it: channel order, paths and PIL images, config
overrides and MODEL.WEIGHTS, and clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import ConfigError
from instseg_deploy.runtime import load_predictor

CONFIG = DEMO_DATA / "shapes_r50" / "config.yaml"
WEIGHTS = DEMO_DATA / "shapes_r50" / "model_final.pkl"
IMAGE = sorted((DEMO_DATA / "shapes_val" / "images").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def bgr_predictor():
    return load_predictor("torch", CONFIG, WEIGHTS, mask_format="rle")


def _same(a, b):
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.masks == b.masks


def test_channel_order_paths_and_pil_images_give_the_same_detections(bgr_predictor):
    bgr = cv2.imread(str(IMAGE))
    reference = bgr_predictor(bgr)
    assert len(reference) > 0
    rgb_predictor = load_predictor("torch", CONFIG, WEIGHTS, mask_format="rle", channel_order="RGB")
    _same(rgb_predictor(np.ascontiguousarray(bgr[:, :, ::-1])), reference)
    _same(bgr_predictor(str(IMAGE)), reference)
    _same(bgr_predictor(IMAGE), reference)
    _same(rgb_predictor(str(IMAGE)), reference)
    _same(bgr_predictor(Image.open(IMAGE)), reference)
    _same(rgb_predictor(Image.open(IMAGE)), reference)


def test_what_is_not_an_image_is_refused_clearly(bgr_predictor):
    with pytest.raises(TypeError, match="numpy array, a PIL image or a file path, not int"):
        bgr_predictor(123)
    with pytest.raises(ValueError, match="channel_order must be 'BGR' or 'RGB'"):
        load_predictor("torch", CONFIG, WEIGHTS, channel_order="bgr")


def test_overrides_equal_the_same_values_written_in_a_yaml(tmp_path):
    derived = tmp_path / "derived.yaml"
    derived.write_text(f"_BASE_: {CONFIG}\nMODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0.3\n"
                       "    NMS_THRESH_TEST: 0.6\n")
    # at the models' own thresholds: the default 0.5 would hide the SCORE_THRESH_TEST override
    from_yaml = load_predictor("torch", derived, WEIGHTS, mask_format="rle", score_thresh=None)
    overridden = load_predictor("torch", CONFIG, WEIGHTS, mask_format="rle", score_thresh=None,
                                overrides=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.3",
                                           "MODEL.ROI_HEADS.NMS_THRESH_TEST", "0.6"])
    plain = load_predictor("torch", CONFIG, WEIGHTS, mask_format="rle", score_thresh=None)
    image = cv2.imread(str(IMAGE))
    _same(overridden(image), from_yaml(image))
    assert len(overridden(image)) < len(plain(image))  # the overrides did change something


def test_model_weights_from_an_override_or_the_yaml(tmp_path, bgr_predictor):
    image = cv2.imread(str(IMAGE))
    by_override = load_predictor("torch", CONFIG, mask_format="rle", overrides=["MODEL.WEIGHTS", str(WEIGHTS)])
    _same(by_override(image), bgr_predictor(image))
    with_weights = tmp_path / "with_weights.yaml"
    with_weights.write_text(f"_BASE_: {CONFIG}\nMODEL:\n  WEIGHTS: {WEIGHTS}\n")
    _same(load_predictor("torch", with_weights, mask_format="rle")(image), bgr_predictor(image))
    with pytest.raises(ConfigError, match="--weights is required"):
        load_predictor("torch", CONFIG)
    with pytest.raises(ConfigError, match="a URL"):
        load_predictor("torch", CONFIG, overrides=["MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl"])


def test_a_bad_override_names_the_key(bgr_predictor):
    with pytest.raises(ConfigError, match="MODEL.ROI_HEADS.SCORE_THRESH"):
        load_predictor("torch", CONFIG, WEIGHTS, overrides=["MODEL.ROI_HEADS.SCORE_THRESH", "0.3"])
    with pytest.raises(ConfigError, match="MODEL.ROI_HEADS.SCORE_THRESH_TEST"):
        load_predictor("torch", CONFIG, WEIGHTS, overrides=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "'high'"])
