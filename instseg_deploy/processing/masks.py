"""28x28 mask probabilities -> masks in one of the formats of ``structures.MASK_FORMATS``.

Pasting (detectron2's paste_masks_in_image: grid_sample bilinear, align_corners=False, zero
padding) switches on pixels of the box grown by one pixel only (paste_region), so every format is
made from that region alone:
"cropped" is the region itself, "rle" is computed from the region's runs without allocating the
image, and only "dense" allocates (N, H, W). All formats hold exactly the same pixels.

The numpy functions here are the reference; :func:`make_masks` runs ops/csrc/mask_paste.cpp instead
when it can be built (the same float32 operations in the same order, region and RLE in one pass, about
3x faster), and the tests hold the two to the same bits.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

import numpy as np
from pycocotools import mask as mask_utils

from instseg_deploy.structures import MASK_FORMATS, CroppedMask, Instances, Masks

logger = logging.getLogger(__name__)
NATIVE_ENV = "INSTSEG_NATIVE_MASKS"  # "0": paste with numpy only


def check_mask_format(mask_format: str) -> str:
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
    return mask_format


def _bilinear_taps(coords: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: int):
    """The two source indices and weights of sampling a ``size``-long signal spanning [lo, hi] at
    pixel centres ``coords``: grid_sample(align_corners=False) with zero padding (an index outside
    the signal gets weight 0). coords (P,) and lo, hi (N, 1) float32 -> four (N, P) arrays."""
    g = (coords - lo) / (hi - lo) * np.float32(2) - np.float32(1)
    src = ((g + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)
    left = np.floor(src)
    w_right = src - left
    w_left = np.float32(1) - w_right
    i0 = left.astype(np.int64)
    i1 = i0 + 1
    w_left = np.where((i0 >= 0) & (i0 < size), w_left, np.float32(0))
    w_right = np.where((i1 >= 0) & (i1 < size), w_right, np.float32(0))
    return np.minimum(np.maximum(i0, 0), size - 1), np.minimum(np.maximum(i1, 0), size - 1), w_left, w_right


def paste_region(box: np.ndarray, height: int, width: int, mask_size: int = 28,
                 threshold: float = 0.5) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels that a (mask_size, mask_size) map pasted into ``box``
    (xyxy image pixels) can switch on, clipped to the (height, width) image.

    Bilinear sampling with zero padding still reaches up to (box side) / (2 * mask_size) pixels
    outside the box, but there with a weight below one half: at a threshold >= 0.5 only the box
    grown by one pixel can be on; a lower threshold needs that whole reach.
    """
    x0, y0, x1, y1 = (np.float32(v) for v in box)
    grow = 1
    if threshold < 0.5:
        grow += int(np.ceil(max(float(x1 - x0), float(y1 - y0)) / (2 * mask_size)))
    return (max(int(np.floor(y0)) - grow, 0), max(int(np.floor(x0)) - grow, 0),
            min(int(np.ceil(y1)) + grow, height), min(int(np.ceil(x1)) + grow, width))


def paste_mask(mask_probs: np.ndarray, box: np.ndarray, height: int, width: int,
               threshold: float = 0.5) -> CroppedMask:
    """Paste one (M, M) probability map into its box: the thresholded region of :func:`paste_region`."""
    return paste_cropped(mask_probs[None], np.asarray(box)[None], height, width, threshold)[0]


def paste_cropped(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int,
                  threshold: float = 0.5) -> list[CroppedMask]:
    """(N, M, M) probabilities + (N, 4) image-pixel boxes -> each mask over its :func:`paste_region`.

    Bilinear sampling is separable: interpolate the rows first (tiny), then gather two of them per
    output pixel, far cheaper than a dense matrix product on large boxes. The taps of every box
    along the image's rows and columns are computed at once, then sliced to each region.
    """
    n, m = len(boxes), mask_probs.shape[-1]
    if n == 0:
        return []
    boxes = np.asarray(boxes, dtype=np.float32).reshape(n, 4)
    probs = np.asarray(mask_probs, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32) + np.float32(0.5)
    xs = np.arange(width, dtype=np.float32) + np.float32(0.5)
    row_taps = _bilinear_taps(ys, boxes[:, 1:2], boxes[:, 3:4], m)  # four (N, H)
    col_taps = _bilinear_taps(xs, boxes[:, 0:1], boxes[:, 2:3], m)  # four (N, W)
    out = []
    for i in range(n):
        top, left, bottom, right = paste_region(boxes[i], height, width, m, threshold)
        r0, r1, wr0, wr1 = (t[i, top:bottom] for t in row_taps)
        c0, c1, wc0, wc1 = (t[i, left:right] for t in col_taps)
        rows = (probs[i][r0] * wr0[:, None] + probs[i][r1] * wr1[:, None]).T  # (M, h)
        # region[y, x] = rows[c0[x], y] * wc0[x] + rows[c1[x], y] * wc1[x], built as its transpose (w, h):
        # whole-row gathers, in the column-major order COCO's RLE reads (rle_counts takes .T, no copy).
        region_t = np.take(rows, c0, axis=0)
        region_t *= wc0[:, None]
        second = np.take(rows, c1, axis=0)
        second *= wc1[:, None]
        region_t += second
        out.append(CroppedMask((top, left), (region_t >= threshold).T))
    return out


def dense_from_cropped(cropped: list[CroppedMask], height: int, width: int) -> np.ndarray:
    """Cropped masks -> (N, height, width) bool."""
    masks = np.zeros((len(cropped), height, width), dtype=bool)
    for i, c in enumerate(cropped):
        top, left = c.offset
        masks[i, top:top + c.mask.shape[0], left:left + c.mask.shape[1]] = c.mask
    return masks


def paste_masks(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = 0.5) -> np.ndarray:
    """(N, M, M) probabilities + (N, 4) image-pixel boxes -> (N, height, width) bool masks."""
    return dense_from_cropped(paste_cropped(mask_probs, boxes, height, width, threshold), height, width)


def rle_counts(cropped: CroppedMask, height: int, width: int) -> np.ndarray:
    """The uncompressed COCO RLE counts of the full (height, width) image holding only ``cropped``.

    COCO runs go down the columns (column-major), starting with a run of zeros. A run starts or ends
    at every on/off change inside a region column (each column padded with an off pixel at both
    ends); a run ending at the bottom of one image column and one starting at the top of the next
    are a single run, so such touching end/start pairs are dropped.
    """
    top, left = cropped.offset
    h, w = cropped.mask.shape
    if h == 0 or w == 0:
        return np.array([height * width], dtype=np.uint32)
    columns = cropped.mask.T  # (w, h): one row per image column (no copy for paste_mask's masks)
    change = np.empty((w, h + 1), dtype=bool)  # on/off changes down each column, off beyond both ends
    change[:, 0] = columns[:, 0]
    np.not_equal(columns[:, 1:], columns[:, :-1], out=change[:, 1:h])
    change[:, h] = columns[:, -1]
    cols, rows = np.divmod(np.flatnonzero(change), h + 1)
    bounds = (cols + left) * height + rows + top  # sorted: column-major order
    if len(bounds) > 1:
        touching = np.flatnonzero(bounds[1:] == bounds[:-1])  # an end equal to the next start
        if len(touching):
            bounds = np.delete(bounds, np.concatenate([touching, touching + 1]))
    return counts_from_bounds(bounds, height * width)


def counts_from_bounds(bounds: np.ndarray, total: int) -> np.ndarray:
    """COCO RLE counts from the sorted column-major positions where the mask turns on or off (zeros first;
    no trailing zero run when the mask ends on)."""
    counts = np.diff(np.concatenate([[0], bounds, [total]]))
    if len(bounds) and bounds[-1] == total:
        counts = counts[:-1]
    return counts.astype(np.uint32)


def compress_rle(counts: np.ndarray, height: int, width: int) -> dict:
    """Uncompressed counts -> COCO compressed RLE with ``counts`` as str (pycocotools' string code)."""
    rle = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def cropped_rle(cropped: CroppedMask, height: int, width: int) -> dict:
    return compress_rle(rle_counts(cropped, height, width), height, width)


def encode_dense(masks: np.ndarray) -> list[dict]:
    """(N, H, W) bool -> COCO compressed RLEs with ``counts`` as str (JSON-serialisable)."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def crop_dense(mask: np.ndarray, box: np.ndarray) -> CroppedMask:
    """A full-image bool mask -> its :func:`paste_region` of ``box``, grown to any on pixel outside it
    (a graph that pasted the mask itself need not keep to the region)."""
    top, left, bottom, right = paste_region(box, *mask.shape)
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if rows.any():
        on_rows, on_cols = np.flatnonzero(rows), np.flatnonzero(cols)
        top, bottom = min(top, on_rows[0]), max(bottom, on_rows[-1] + 1)
        left, right = min(left, on_cols[0]), max(right, on_cols[-1] + 1)
    return CroppedMask((int(top), int(left)), np.ascontiguousarray(mask[top:bottom, left:right]))


def make_masks(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int, mask_format: str,
               threshold: float = 0.5) -> Masks:
    """(N, M, M) probabilities + (N, 4) image-pixel boxes -> masks in ``mask_format``; through the
    native library when it is available (the same pixels, several times faster), else numpy."""
    if check_mask_format(mask_format) == "none":
        return None
    if native_paste() is not None:
        return paste_native(mask_probs, boxes, height, width, mask_format, threshold)
    cropped = paste_cropped(mask_probs, boxes, height, width, threshold)
    if mask_format == "cropped":
        return cropped
    if mask_format == "rle":
        return [cropped_rle(c, height, width) for c in cropped]
    return dense_from_cropped(cropped, height, width)


@functools.lru_cache(maxsize=1)
def native_paste():
    """The C function ``instseg_paste_mask_rle`` (ops/csrc/mask_paste.cpp, built on first use), or None
    where it cannot be built (no compiler) or INSTSEG_NATIVE_MASKS=0: then numpy does the same."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None
    from instseg_deploy.ops.native_build import NativeBuildError, mask_library_path

    try:
        function = ctypes.CDLL(str(mask_library_path())).instseg_paste_mask_rle
    except (NativeBuildError, OSError, AttributeError) as e:
        logger.info("pasting masks with numpy: %s", str(e).splitlines()[0])
        return None
    pointer = ctypes.c_void_p
    function.restype = ctypes.c_int64
    function.argtypes = [pointer, ctypes.c_int32, pointer, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                         ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_float, pointer, pointer,
                         ctypes.c_int64]
    return function


def paste_native(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int, mask_format: str,
                 threshold: float = 0.5) -> Masks:
    """:func:`make_masks` through the native library (which must be available): each mask pasted over its
    region with its RLE counts made in the same pass."""
    function = native_paste()
    probs = np.ascontiguousarray(mask_probs, dtype=np.float32)
    boxes = np.ascontiguousarray(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    m = probs.shape[-1]
    counts = np.empty(1 << 12, dtype=np.uint32)
    cropped, rles = [], []
    for i in range(len(boxes)):
        top, left, bottom, right = paste_region(boxes[i], height, width, m, threshold)
        region_t = None if mask_format == "rle" else np.empty((right - left, bottom - top), dtype=np.uint8)
        while True:
            n = function(probs[i].ctypes.data, m, boxes[i].ctypes.data, height, width, top, left, bottom, right,
                         threshold, None if region_t is None else region_t.ctypes.data, counts.ctypes.data,
                         len(counts))
            if n >= 0:
                break
            counts = np.empty(-n, dtype=np.uint32)  # a mask with more runs than the buffer holds
        if region_t is None:
            rles.append(compress_rle(counts[:n].copy(), height, width))
        else:
            cropped.append(CroppedMask((top, left), region_t.view(bool).T))
    if mask_format == "rle":
        return rles
    return cropped if mask_format == "cropped" else dense_from_cropped(cropped, height, width)


def masks_from_dense(masks: np.ndarray, boxes: np.ndarray, mask_format: str) -> Masks:
    """(N, H, W) bool masks (e.g. pasted by the graph) -> ``mask_format``."""
    if check_mask_format(mask_format) == "none":
        return None
    if mask_format == "dense":
        return masks
    if mask_format == "rle":
        return encode_dense(masks)
    return [crop_dense(m, b) for m, b in zip(masks, boxes)]


def as_format(instances: Instances, mask_format: str, threshold: float = 0.5) -> Masks:
    """``instances``' masks in ``mask_format``, converted from the format they hold (exactly the same
    pixels). Instances predicted without masks ("none") are pasted from their 28x28 probabilities
    at ``threshold``."""
    check_mask_format(mask_format)
    held = instances.mask_format
    if mask_format == held:
        return instances.masks
    if mask_format == "none":
        return None
    height, width = instances.image_size
    if held == "none":
        return make_masks(instances.mask_probs, instances.boxes, height, width, mask_format, threshold)
    if held == "cropped":
        if mask_format == "rle":
            return [cropped_rle(c, height, width) for c in instances.masks]
        return dense_from_cropped(instances.masks, height, width)
    dense = instances.masks if held == "dense" else decode_rles(instances.masks, height, width)
    return masks_from_dense(dense, instances.boxes, mask_format)


def decode_rles(rles: list[dict], height: int, width: int) -> np.ndarray:
    """COCO compressed RLEs -> (N, height, width) bool."""
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    return np.transpose(mask_utils.decode(list(rles)), (2, 0, 1)).astype(bool)
