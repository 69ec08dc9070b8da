"""Shared pre/post-processing reproduces detectron2's DefaultPredictor and detector_postprocess."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from instseg_deploy.processing.masks import paste_masks
from instseg_deploy.processing.postprocess import postprocess
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess, resized_shape

PARAMS = PreprocessParams("BGR", 320, 512, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395), 32)


def _reference_paste(masks: np.ndarray, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """detectron2's _do_paste_mask (grid_sample over the whole image, skip_empty off)."""
    masks_t = torch.from_numpy(masks)[:, None]
    boxes_t = torch.from_numpy(boxes)
    x0, y0, x1, y1 = torch.split(boxes_t, 1, dim=1)
    img_y = torch.arange(0, h, dtype=torch.float32) + 0.5
    img_x = torch.arange(0, w, dtype=torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    n = masks.shape[0]
    gx = img_x[:, None, :].expand(n, h, w)
    gy = img_y[:, :, None].expand(n, h, w)
    out = F.grid_sample(masks_t, torch.stack([gx, gy], dim=3), align_corners=False)
    return (out[:, 0] >= 0.5).numpy()


def test_resized_shape_matches_resize_shortest_edge():
    assert resized_shape(308, 328, 320, 512) == (320, 341)
    assert resized_shape(512, 512, 320, 512) == (320, 320)
    assert resized_shape(480, 640, 800, 1333) == (800, 1067)
    assert resized_shape(100, 1000, 800, 1333) == (133, 1333)  # capped by the long side


def test_preprocess_pads_with_mean_and_keeps_sizes():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (500, 250, 3), dtype=np.uint8)
    batch = preprocess([a, b], PARAMS)
    assert batch.images.shape[0] == 2 and batch.images.shape[2] % 32 == 0 and batch.images.shape[3] % 32 == 0
    assert batch.image_sizes.tolist() == [[320, 427], [512, 256]]
    assert batch.original_sizes.tolist() == [[300, 400], [500, 250]]
    normalized = (batch.images - np.array(PARAMS.pixel_mean, np.float32)[:, None, None]) / np.array(
        PARAMS.pixel_std, np.float32)[:, None, None]
    assert np.all(normalized[1, :, :, 256:] == 0)  # padding is exactly 0 after normalisation
    assert np.all(normalized[0, :, 320:, :] == 0)


def test_channel_order_rgb_input_equals_flipped_bgr():
    image = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    bgr = preprocess([image], PARAMS, "BGR")
    rgb = preprocess([image[:, :, ::-1].copy()], PARAMS, "RGB")
    np.testing.assert_array_equal(bgr.images, rgb.images)
    rgb_model = preprocess([image], PreprocessParams("RGB", *list(PARAMS.__dict__.values())[1:]), "BGR")
    np.testing.assert_array_equal(rgb_model.images[:, ::-1], bgr.images)


def test_paste_matches_detectron2_grid_sample():
    rng = np.random.default_rng(2)
    h, w = 97, 131
    probs = rng.random((12, 28, 28), dtype=np.float32)
    x0 = rng.uniform(-20, w, 12).astype(np.float32)
    y0 = rng.uniform(-20, h, 12).astype(np.float32)
    boxes = np.stack([x0, y0, x0 + rng.uniform(0.5, 80, 12), y0 + rng.uniform(0.5, 60, 12)], 1).astype(np.float32)
    ours = paste_masks(probs, boxes, h, w)
    ref = _reference_paste(probs, boxes, h, w)
    assert ours.shape == ref.shape
    assert (ours != ref).sum() <= 2  # float summation order only; masks must be the same
    assert ref.sum() > 1000


def test_postprocess_scales_clips_filters():
    boxes = np.array([[10, 10, 50, 40], [-5, 100, 20, 200], [330, 5, 340, 20], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.3], np.float32)
    inst = postprocess(boxes, scores, np.array([0, 1, 2, 3]), np.ones((4, 28, 28), np.float32),
                       input_size=(160, 320), original_size=(320, 640), score_thresh=0.5)
    # the third box lies entirely right of the image after clipping -> empty -> dropped;
    # the fourth is below the score threshold
    assert len(inst) == 2 and inst.classes.tolist() == [0, 1]
    np.testing.assert_allclose(inst.boxes[0], [20, 20, 100, 80])
    np.testing.assert_allclose(inst.boxes[1], [0, 200, 40, 320])
    assert inst.masks.shape == (2, 320, 640) and inst.masks[0, 21:79, 21:99].all()
    assert inst.masks[0].sum() < 60 * 80 + 1 and not inst.masks[0, :19].any()
    np.testing.assert_allclose(inst.boxes_net[0], boxes[0])


@pytest.mark.parametrize("n", [0, 1])
def test_postprocess_empty_and_single(n):
    inst = postprocess(np.zeros((n, 4), np.float32) + [0, 0, 4, 4], np.ones(n, np.float32), np.zeros(n, np.int64),
                       np.ones((n, 28, 28), np.float32), (8, 8), (16, 16))
    assert len(inst) == n and inst.masks.shape == (n, 16, 16)
