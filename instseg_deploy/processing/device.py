"""Pre- and post-processing on the model's torch device (a GPU), beside the exact host path.

For torch CUDA (and TensorRT, whose outputs are CUDA tensors already), resizing on the CPU and
pasting every mask on the CPU cost more than the network (detectron2 itself pastes on the GPU).
Here the uint8 image is uploaded once and resized, padded and pasted where the model runs; only
boxes, scores and compact masks (RLE boundaries, cropped regions) come back.

Semantics, compared with processing.preprocess / processing.masks (the reference, kept for CPU runs):
- resize: Pillow's BILINEAR written as gathers in Pillow's own fixed-point arithmetic and pass
  order: the same pixels (float antialiased interpolation would differ by one or two grey levels
  on a few percent of them).
- paste: the same separable bilinear taps as processing.masks.paste_mask, op for op in float32,
  evaluated over the whole image at once (weights outside the box are 0): the same pixels.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from instseg_deploy.processing.masks import check_mask_format, compress_rle, counts_from_bounds, paste_region
from instseg_deploy.processing.preprocess import (
    Batch,
    PreprocessParams,
    batch_shape,
    check_image,
    checked_resized_shape,
)
from instseg_deploy.structures import CroppedMask, Masks

# Instances pasted at once: bounds the float (chunk, H, W) intermediate (~0.5 GB at 800x1333).
PASTE_CHUNK = 128


def preprocess_on_device(images: list[np.ndarray], params: PreprocessParams, device: torch.device,
                         channel_order: str = "BGR", pad_to: tuple[int, int] | None = None) -> Batch:
    """processing.preprocess on ``device``: ``Batch.images`` is an (N, 3, H, W) float32 tensor there."""
    if not images:
        raise ValueError("preprocess needs at least one image")
    resized = []
    for image in images:
        check_image(image)
        chw = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True).permute(2, 0, 1)
        if channel_order != params.input_format:
            chw = chw.flip(0)
        h, w = checked_resized_shape(image.shape[0], image.shape[1], params)
        resized.append(resize_on_device(chw, h, w))
    sizes = np.array([r.shape[1:] for r in resized], dtype=np.int64)
    h, w = batch_shape(sizes, params, pad_to)
    mean = torch.tensor(params.pixel_mean, dtype=torch.float32, device=device)
    batch = mean[None, :, None, None].repeat(len(resized), 1, h, w)
    for i, r in enumerate(resized):
        batch[i, :, : r.shape[1], : r.shape[2]] = r
    original = np.array([im.shape[:2] for im in images], dtype=np.int64)
    return Batch(images=batch, image_sizes=sizes, original_sizes=original)


# Pillow's 8-bit resampling: weights in fixed point with this many fraction bits (Resample.c).
_PILLOW_PRECISION_BITS = 32 - 8 - 2


def pillow_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's BILINEAR resampling of one axis as gather taps: source indices (out_size, K) and
    fixed-point weights (out_size, K) int32 (precompute_coeffs + normalize_coeffs_8bpc: a triangle
    filter whose support grows with the downscale factor, i.e. antialiased)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = filter_scale  # the bilinear filter's support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), np.int64)
    weight = np.zeros((out_size, ksize), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)  # C casts truncate, as int() does
        hi = min(int(center + support + 0.5), in_size)
        w = np.clip(1.0 - np.abs((np.arange(lo, hi) - center + 0.5) / filter_scale), 0.0, None)
        if w.sum() != 0.0:
            w = w / w.sum()
        index[xx, :hi - lo] = np.arange(lo, hi)
        weight[xx, :hi - lo] = w
    fixed = np.trunc(weight * (1 << _PILLOW_PRECISION_BITS) + np.where(weight < 0, -0.5, 0.5))
    return index, fixed.astype(np.int32)


def _resample_last_axis(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """One Pillow pass over the last axis of an int32 tensor of uint8 values, rounded and clipped."""
    index, weight = (torch.from_numpy(a).to(x.device) for a in pillow_bilinear_taps(x.shape[-1], out_size))
    acc = (x[..., index] * weight).sum(-1) + (1 << (_PILLOW_PRECISION_BITS - 1))
    return (acc >> _PILLOW_PRECISION_BITS).clamp_(0, 255).to(torch.int32)


def resize_on_device(chw: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, height, width) float32 holding uint8 values: Pillow's BILINEAR in its
    own integer arithmetic, one axis at a time with 8-bit rounding in between, so the same pixels."""
    out = chw.to(torch.int32)
    for axis in _pass_order(out.shape[1], out.shape[2], height, width):
        if axis == "columns":
            out = _resample_last_axis(out, width)
        else:
            out = _resample_last_axis(out.transpose(1, 2), height).transpose(1, 2)
    return out.float()


@functools.lru_cache(maxsize=256)
def _pass_order(in_h: int, in_w: int, height: int, width: int) -> tuple[str, ...]:
    """Which axis Pillow resamples first for this size change ("columns": along each row first).

    Releases of Pillow differ (older ones always did the rows first; newer ones choose), and the
    8-bit rounding between the passes makes the order visible. So it is measured, once per size
    change: Pillow and both orders on a noise image of the same size (sizes repeat in practice:
    one camera, one dataset)."""
    axes = tuple(a for a, needed in (("columns", in_w != width), ("rows", in_h != height)) if needed)
    if len(axes) < 2:
        return axes
    probe = np.random.default_rng(0).integers(0, 256, (in_h, in_w), dtype=np.uint8)
    expected = torch.from_numpy(np.array(Image.fromarray(probe).resize((width, height), Image.BILINEAR)))
    x = torch.from_numpy(probe.astype(np.int32))[None]
    rows_first = _resample_last_axis(_resample_last_axis(x.transpose(1, 2), height).transpose(1, 2), width)
    return axes[::-1] if torch.equal(rows_first[0], expected.to(torch.int32)) else axes


def _taps(coords: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, size: int):
    """processing.masks._bilinear_taps for N boxes at once: coords (P,), lo/hi (N, 1) -> (N, P) each."""
    g = (coords[None, :] - lo) / (hi - lo) * 2.0 - 1.0
    src = ((g + 1.0) * float(size) - 1.0) / 2.0
    left = torch.floor(src)
    w_right = src - left
    w_left = 1.0 - w_right
    i0 = left.long()
    i1 = i0 + 1
    zero = torch.zeros((), dtype=src.dtype, device=src.device)
    w_left = torch.where((i0 >= 0) & (i0 < size), w_left, zero)
    w_right = torch.where((i1 >= 0) & (i1 < size), w_right, zero)
    return i0.clamp(0, size - 1), i1.clamp(0, size - 1), w_left, w_right


def paste_masks_on_device(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                          threshold: float = 0.5) -> torch.Tensor:
    """(N, M, M) probabilities + (N, 4) image-pixel boxes (float32, one device) -> (N, height, width) bool."""
    n, m = mask_probs.shape[0], mask_probs.shape[-1]
    out = torch.zeros((n, height, width), dtype=torch.bool, device=mask_probs.device)
    ys = torch.arange(height, dtype=torch.float32, device=mask_probs.device) + 0.5
    xs = torch.arange(width, dtype=torch.float32, device=mask_probs.device) + 0.5
    for start in range(0, n, PASTE_CHUNK):
        probs, b = mask_probs[start:start + PASTE_CHUNK].float(), boxes[start:start + PASTE_CHUNK].float()
        x0, y0, x1, y1 = (b[:, k:k + 1] for k in range(4))
        r0, r1, wr0, wr1 = _taps(ys, y0, y1, m)
        c0, c1, wc0, wc1 = _taps(xs, x0, x1, m)
        rows = (torch.gather(probs, 1, r0[:, :, None].expand(-1, -1, m)) * wr0[:, :, None]
                + torch.gather(probs, 1, r1[:, :, None].expand(-1, -1, m)) * wr1[:, :, None])  # (n, H, M)
        left = torch.gather(rows, 2, c0[:, None, :].expand(-1, height, -1)) * wc0[:, None, :]
        right = torch.gather(rows, 2, c1[:, None, :].expand(-1, height, -1)) * wc1[:, None, :]
        out[start:start + PASTE_CHUNK] = (left + right) >= threshold
    return out


def rle_on_device(masks: torch.Tensor) -> list[dict]:
    """(N, H, W) bool on any device -> COCO compressed RLEs; only the run boundaries leave the device."""
    n, height, width = masks.shape
    if n == 0:
        return []
    flat = masks.transpose(1, 2).reshape(n, height * width).to(torch.int8)  # COCO runs go down the columns
    padded = F.pad(flat, (1, 1))
    inst, bounds = torch.nonzero(padded[:, 1:] != padded[:, :-1], as_tuple=True)
    inst, bounds = inst.cpu().numpy(), bounds.cpu().numpy()
    splits = np.searchsorted(inst, np.arange(1, n))
    return [compress_rle(counts_from_bounds(b, height * width), height, width) for b in np.split(bounds, splits)]


def masks_on_device(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int, mask_format: str,
                    device: torch.device, threshold: float = 0.5) -> Masks:
    """processing.masks.make_masks, pasting on ``device``."""
    if check_mask_format(mask_format) == "none":
        return None
    dense = paste_masks_on_device(torch.from_numpy(np.ascontiguousarray(mask_probs)).to(device),
                                  torch.from_numpy(np.ascontiguousarray(boxes)).to(device), height, width, threshold)
    if mask_format == "rle":
        return rle_on_device(dense)
    if mask_format == "dense":
        return dense.cpu().numpy()
    cropped = []
    for mask, box in zip(dense, boxes):  # only each region leaves the device
        top, left, bottom, right = paste_region(box, height, width, mask_probs.shape[-1], threshold)
        cropped.append(CroppedMask((top, left), mask[top:bottom, left:right].cpu().numpy()))
    return cropped
