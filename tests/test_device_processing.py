"""processing.device, the GPU pre/post-processing path, run here on CPU tensors (the same torch
code a CUDA device runs): resizing and pasting give exactly the host's pixels, so a predictor on
this path gives the host path's detections."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from golden import golden_images, load_golden
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.evaluation.parity import match_detections
from instseg_deploy.processing.device import (
    masks_on_device,
    paste_masks_on_device,
    preprocess_on_device,
    resize_on_device,
    rle_on_device,
)
from instseg_deploy.processing.masks import encode_dense, make_masks, paste_masks
from instseg_deploy.processing.preprocess import PreprocessParams, preprocess, resize
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.runtime.torch_runner import TorchRunner

CPU = torch.device("cpu")
PARAMS = PreprocessParams("BGR", 320, 512, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395), 32)


def _random_boxes(rng, n, h, w):
    x0 = rng.uniform(-20, w, n).astype(np.float32)
    y0 = rng.uniform(-20, h, n).astype(np.float32)
    return np.stack([x0, y0, x0 + rng.uniform(0.5, 90, n), y0 + rng.uniform(0.5, 70, n)], 1).astype(np.float32)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_device_paste_is_the_host_paste(threshold):
    rng = np.random.default_rng(0)
    h, w = 97, 131
    probs = rng.random((40, 28, 28), dtype=np.float32)
    boxes = _random_boxes(rng, 40, h, w)
    host = paste_masks(probs, boxes, h, w, threshold)
    device = paste_masks_on_device(torch.from_numpy(probs), torch.from_numpy(boxes), h, w, threshold).numpy()
    np.testing.assert_array_equal(device, host)
    assert host.sum() > 1000


@pytest.mark.parametrize("stem,path", golden_images()[:4])
def test_device_formats_equal_host_formats_on_golden_images(stem, path):
    golden, _ = load_golden(stem)
    h, w = golden.image_size
    for fmt in ("dense", "rle", "cropped", "none"):
        host = make_masks(golden.mask_probs, golden.boxes, h, w, fmt)
        device = masks_on_device(golden.mask_probs, golden.boxes, h, w, fmt, CPU)
        if fmt == "dense":
            np.testing.assert_array_equal(device, host)
        elif fmt == "cropped":
            assert [c.offset for c in device] == [c.offset for c in host]
            for a, b in zip(device, host):
                np.testing.assert_array_equal(a.mask, b.mask)
        else:
            assert device == host


def test_device_rle_handles_full_and_empty_masks():
    masks = np.zeros((3, 5, 4), bool)
    masks[1] = True
    masks[2, :, 2] = True  # a full column: runs of adjacent columns join
    masks[2, 4, 3] = True
    assert rle_on_device(torch.from_numpy(masks)) == encode_dense(masks)
    assert rle_on_device(torch.zeros((0, 5, 4), dtype=torch.bool)) == []


def test_device_resize_is_pillow_exactly():
    """Down, up, mixed, tiny and very elongated size changes, as preprocess makes them (both pass
    orders of Pillow occur among these)."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8),
              cv2.GaussianBlur(rng.integers(0, 256, (500, 250, 3), dtype=np.uint8), (9, 9), 3),
              rng.integers(0, 256, (200, 210, 3), dtype=np.uint8),
              rng.integers(0, 256, (700, 90, 3), dtype=np.uint8)]
    host = preprocess(images, PARAMS)
    device = preprocess_on_device(images, PARAMS, CPU)
    np.testing.assert_array_equal(device.image_sizes, host.image_sizes)
    np.testing.assert_array_equal(device.original_sizes, host.original_sizes)
    np.testing.assert_array_equal(device.images.numpy(), host.images)
    for shape, size in (((23, 35), (8, 30)), ((23, 35), (37, 41)), ((3000, 500), (1333, 222)), ((61, 97), (80, 12))):
        image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
        ours = resize_on_device(torch.from_numpy(image).permute(2, 0, 1), *size).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, resize(image, *size))


def test_predictor_on_the_device_path_finds_the_host_detections(fixture_model):
    model, cfg = fixture_model
    params = PreprocessParams.from_model_config(cfg.model)
    host = Predictor(TorchRunner(model), params, cfg.class_names, mask_format="rle")
    device = Predictor(TorchRunner(model), params, cfg.class_names, mask_format="rle", processing_device=CPU)
    matched = total = 0
    ious = []
    for path in sorted((DEMO_DATA / "shapes_val" / "images").glob("*.jpg"))[:4]:
        image = cv2.imread(str(path))
        a, b = host(image), device(image)
        assert b.mask_format == "rle" and len(b.masks) == len(b)
        report = match_detections(a, b)
        matched, total = matched + report.matched, total + max(len(a), len(b))
        ious.extend(report.mask_ious)
        assert b.masks == a.masks  # same input pixels, same model: the same RLE strings
    assert total > 0 and matched == total
    assert min(ious) == 1.0
