"""Filling a preprocessed batch up to the shape a graph or engine requires.

A fixed-batch ONNX graph, a TensorRT profile whose smallest batch or size is larger than the
request, and TensorRT's fixed-shape calibration all need more slots or pixels than the real
images fill. Extra pixels are the pixel mean (exactly 0 after the graph's normalisation, like
any padding); extra slots are small blank images whose detections the caller drops by batch
index (``batch_idx >= num_real``), or, for calibration, repeats of the real images (their
statistics are what is wanted, not a blank image's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instseg_deploy.processing.graph_io import IMAGE_SIZES, IMAGES, ORIGINAL_SIZES
from instseg_deploy.processing.preprocess import Batch

BLANK_SIZE = 32  # (h, w) given for blank filler images: tiny, so the graph spends almost nothing on them


def fill_batch(batch: Batch, pixel_mean: Sequence[float], input_names: Sequence[str], *, batch_size: int = 0,
               size: tuple[int, int] = (0, 0), repeat: bool = False) -> tuple[dict[str, np.ndarray], int]:
    """(feeds by input name, number of real images) for ``batch`` grown to at least
    ``batch_size`` images of at least ``size`` = (H, W).

    feeds: images (N', 3, H', W') float32, image_sizes / original_sizes (N', 2) int64, only those
    in ``input_names``. Unchanged arrays are passed through as they are (no copy). ``repeat``:
    extra slots cycle through the real images instead of being blank.
    """
    images, sizes, originals = batch.images, batch.image_sizes, batch.original_sizes
    n, channels, h, w = images.shape
    target = (max(n, batch_size), channels, max(h, size[0]), max(w, size[1]))
    if target != images.shape:
        grown = np.empty(target, dtype=np.float32)
        grown[:] = np.asarray(pixel_mean, dtype=np.float32)[None, :, None, None]
        grown[:n, :, :h, :w] = images
        if target[0] > n:
            if repeat:
                source = np.arange(n, target[0]) % n
                grown[n:] = grown[source]
                sizes = np.concatenate([sizes, sizes[source]])
                originals = np.concatenate([originals, originals[source]])
            else:
                blank = np.full((target[0] - n, 2), BLANK_SIZE, np.int64)
                sizes, originals = np.concatenate([sizes, blank]), np.concatenate([originals, blank])
        images = grown
    feeds = {IMAGES: images, IMAGE_SIZES: sizes, ORIGINAL_SIZES: originals}
    return {name: feeds[name] for name in input_names}, n
