"""Blank-slot batch filling (processing/batching.py) and the runners that rely on it."""

from __future__ import annotations

import types

import numpy as np
import pytest

from instseg_deploy.processing.batching import BLANK_SIZE, fill_batch
from instseg_deploy.processing.preprocess import Batch

MEAN = (103.53, 116.28, 123.675)
ALL_INPUTS = ["images", "image_sizes", "original_sizes"]


def _batch(n: int, h: int = 64, w: int = 96) -> Batch:
    images = np.stack([np.full((3, h, w), float(i + 1), np.float32) for i in range(n)])
    return Batch(images, np.array([[h - 4 - i, w - 6] for i in range(n)], np.int64),
                 np.array([[2 * h + i, 2 * w] for i in range(n)], np.int64))


def _is_mean(pixels: np.ndarray) -> bool:
    return np.array_equal(pixels, np.broadcast_to(np.array(MEAN, np.float32)[:, None, None], pixels.shape))


def test_blank_slots_fill_the_batch_and_are_counted_out():
    feeds, real = fill_batch(_batch(2), MEAN, ALL_INPUTS, batch_size=4)
    assert real == 2 and feeds["images"].shape == (4, 3, 64, 96) and feeds["images"].dtype == np.float32
    assert (feeds["images"][:2] == np.array([1, 2], np.float32)[:, None, None, None]).all()
    assert _is_mean(feeds["images"][2]) and _is_mean(feeds["images"][3])
    assert feeds["image_sizes"].tolist() == [[60, 90], [59, 90]] + [[BLANK_SIZE, BLANK_SIZE]] * 2
    assert feeds["original_sizes"].tolist() == [[128, 192], [129, 192]] + [[BLANK_SIZE, BLANK_SIZE]] * 2
    assert feeds["image_sizes"].dtype == feeds["original_sizes"].dtype == np.int64


def test_a_larger_minimum_size_pads_bottom_right_with_the_pixel_mean():
    feeds, real = fill_batch(_batch(1), MEAN, ALL_INPUTS, size=(128, 96))
    assert real == 1 and feeds["images"].shape == (1, 3, 128, 96)
    assert (feeds["images"][0, :, :64] == 1).all() and _is_mean(feeds["images"][0, :, 64:])
    assert feeds["image_sizes"].tolist() == [[60, 90]]  # the real image's size is unchanged


def test_nothing_to_fill_passes_the_arrays_through():
    batch = _batch(3)
    feeds, real = fill_batch(batch, MEAN, ["images", "image_sizes"], batch_size=2, size=(32, 32))
    assert real == 3 and set(feeds) == {"images", "image_sizes"}
    assert feeds["images"] is batch.images and feeds["image_sizes"] is batch.image_sizes


def test_repeat_cycles_through_the_real_images():
    feeds, real = fill_batch(_batch(2), MEAN, ALL_INPUTS, batch_size=5, size=(80, 96), repeat=True)
    assert real == 2 and feeds["images"].shape == (5, 3, 80, 96)
    assert [float(feeds["images"][i, 0, 0, 0]) for i in range(5)] == [1, 2, 1, 2, 1]
    assert all(_is_mean(feeds["images"][i, :, 64:]) for i in range(5))
    assert feeds["image_sizes"].tolist() == [[60, 90], [59, 90], [60, 90], [59, 90], [60, 90]]


def test_unknown_input_names_are_an_error():
    with pytest.raises(KeyError):
        fill_batch(_batch(1), MEAN, ["images", "scale"])


def test_ort_runner_fills_a_fixed_batch_and_drops_the_filler_detections():
    """ONNX Runtime's session is replaced: one detection per batch slot comes back."""
    from instseg_deploy.runtime.ort import OrtRunner

    seen = {}

    class Session:
        def get_inputs(self):
            return [types.SimpleNamespace(name=n) for n in ("images", "image_sizes")]

        def get_outputs(self):
            return [types.SimpleNamespace(name=n) for n in ("boxes", "scores", "classes", "batch_idx", "mask_probs")]

        def run(self, _, feeds):
            seen.update(feeds)
            n = feeds["images"].shape[0]
            return [np.zeros((n, 4), np.float32), np.full(n, 0.9, np.float32), np.zeros(n, np.int64),
                    np.arange(n, dtype=np.int64), np.zeros((n, 1, 28, 28), np.float32)]

    runner = OrtRunner(Session(), {"batch": 4, "size": "dynamic", "preprocess": {"pixel_mean": list(MEAN)}})
    raw = runner.run(_batch(1))
    assert set(seen) == {"images", "image_sizes"} and seen["images"].shape == (4, 3, 64, 96)
    assert raw.batch_idx.tolist() == [0]  # the three blank slots' detections are dropped
