"""Pre/post-processing contracts every backend relies on, pinned against detectron2's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from instseg_deploy.modeling.box_ops import clip_boxes
from instseg_deploy.processing.postprocess import postprocess
from instseg_deploy.processing.preprocess import resize

# Pillow's fixed-point resampling (libImaging/Resample.c): 32 - 8 - 2 bits for the coefficients.
PRECISION_BITS = 22


def _pillow_bilinear_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(out_size, in_size) int64 fixed-point weights of Pillow's BILINEAR (a triangle filter whose
    support grows with the downscale factor: antialiased), and nothing else -- written out from
    Resample.c's precompute_coeffs / normalize_coeffs_8bpc as an independent reference."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 1.0 * filter_scale  # bilinear filter support is 1
    weights = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((x - center + 0.5) / filter_scale), 0.0, None)
        weights[xx, lo:hi] = w / w.sum()
    fixed = np.where(weights < 0, np.trunc(-0.5 + weights * (1 << PRECISION_BITS)),
                     np.trunc(0.5 + weights * (1 << PRECISION_BITS)))
    return fixed.astype(np.int64), weights


def _pillow_bilinear_reference(image: np.ndarray, height: int, width: int, vertical_first: bool) -> np.ndarray:
    """One pass per axis, each rounded and clipped to uint8, as Pillow does."""
    def one_pass(a: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
        acc = np.tensordot(a.astype(np.int64), k, axes=([axis], [1]))  # the resized axis moves last
        acc = np.moveaxis(acc, -1, axis) + (1 << (PRECISION_BITS - 1))
        return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)

    kx, _ = _pillow_bilinear_coefficients(image.shape[1], width)
    ky, _ = _pillow_bilinear_coefficients(image.shape[0], height)
    if vertical_first:
        return one_pass(one_pass(image, ky, axis=0), kx, axis=1)
    return one_pass(one_pass(image, kx, axis=1), ky, axis=0)


# (23, 35) -> down, up, and a height shrinking by more than twice the width's pixels: recent Pillow
# runs the vertical pass first there (ImagingResampleInner), older versions the horizontal one.
@pytest.mark.parametrize("out_hw", [(13, 29), (37, 41), (8, 30)])
def test_resize_is_pillow_bilinear_on_uint8(out_hw):
    """detectron2's ResizeTransform resizes uint8 images with Pillow's BILINEAR; ours must be the
    very same pixels (a nearest-neighbour or non-antialiased resize differs by tens of levels)."""
    image = np.random.default_rng(0).integers(0, 256, (23, 35, 3), dtype=np.uint8)
    h, w = out_hw
    ours = resize(image, h, w)
    assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR)))
    # Either pass order is Pillow's bilinear; they differ only in how the intermediate rounds (by 1).
    references = [_pillow_bilinear_reference(image, h, w, vertical_first) for vertical_first in (False, True)]
    assert any(np.array_equal(ours, ref) for ref in references), \
        f"max difference to the reference {min(np.abs(ours.astype(int) - r).max() for r in references)}"


def test_reference_weights_are_the_triangle_filter():
    """The reference itself: a 2x downscale averages pixel pairs' neighbourhoods with weights
    1/8, 3/8, 3/8, 1/8; an upscale interpolates between the two nearest pixels."""
    _, down = _pillow_bilinear_coefficients(8, 4)
    np.testing.assert_allclose(down[1, 1:5], [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    _, up = _pillow_bilinear_coefficients(4, 8)
    np.testing.assert_allclose(up[3, 1:3], [0.75, 0.25])  # output centre 1.75: inputs at 1.5, 2.5


def test_postprocess_clips_boxes_to_exactly_the_image_width_and_height():
    """detectron2's Boxes.clip clamps x to [0, W] and y to [0, H] (not W - 1 / H - 1)."""
    boxes = np.array([[-7, -3, 400, 300], [50, 10, 250, 190], [100, -20, 260, 80]], np.float32)
    inst = postprocess(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64),
                       np.ones((3, 28, 28), np.float32), input_size=(200, 250), original_size=(333, 417),
                       mask_format="none")
    sx, sy = np.float32(417 / 250), np.float32(333 / 200)
    np.testing.assert_array_equal(inst.boxes[0], [0, 0, 417, 333])  # overhangs every side
    np.testing.assert_array_equal(inst.boxes[1], [50 * sx, 10 * sy, 417, 190 * sy])  # x2 == W
    np.testing.assert_array_equal(inst.boxes[2], [100 * sx, 0, 417, 80 * sy])


def test_model_clips_boxes_to_exactly_the_image_width_and_height():
    """The ROI heads and the RPN clip in network-input pixels the same way: to [0, w] x [0, h]."""
    boxes = torch.tensor([[[-5.0, -5.0, 500.0, 500.0], [10.0, 20.0, 30.0, 40.0]],
                          [[-1.0, 2.0, 99.5, 300.0], [320.0, 5.0, 321.0, 6.0]]])
    clipped = clip_boxes(boxes, torch.tensor([[240], [160]]), torch.tensor([[320], [300]]))
    torch.testing.assert_close(clipped, torch.tensor([[[0.0, 0.0, 320.0, 240.0], [10.0, 20.0, 30.0, 40.0]],
                                                      [[0.0, 2.0, 99.5, 160.0], [300.0, 5.0, 300.0, 6.0]]]),
                               rtol=0, atol=0)
