"""Image -> network input, exactly as detectron2's DefaultPredictor + GeneralizedRCNN do it.

Shared by every backend. The model graph normalises ((x - mean) / std) itself, so the host
pads with the pixel mean: the padded area is then exactly 0 after normalisation, as in
detectron2's ImageList (which pads the normalised tensor with 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from instseg_deploy.config.types import ModelConfig
from instseg_deploy.errors import InstsegError


@dataclass(frozen=True)
class PreprocessParams:
    """Everything needed to prepare an image; ONNX metadata carries the same fields."""

    input_format: str  # channel order the network expects: "BGR" or "RGB"
    min_size: int  # ResizeShortestEdge short side
    max_size: int  # ... and cap on the long side
    pixel_mean: tuple[float, float, float]  # in the network's channel order
    pixel_std: tuple[float, float, float]
    size_divisibility: int

    @staticmethod
    def from_model_config(cfg: ModelConfig) -> PreprocessParams:
        return PreprocessParams(cfg.input.format, cfg.input.min_size_test, cfg.input.max_size_test,
                                cfg.pixel_mean, cfg.pixel_std, cfg.size_divisibility)


@dataclass
class Batch:
    """images: (N, 3, H, W) float32, padded; image_sizes: (N, 2) int64 resized (h, w) before
    padding; original_sizes: (N, 2) int64 (h, w) of the input images."""

    images: np.ndarray
    image_sizes: np.ndarray
    original_sizes: np.ndarray


def resized_shape(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge.get_output_shape (float math, round half up)."""
    scale = short_edge * 1.0 / min(height, width)
    if height < width:
        new_h, new_w = short_edge * 1.0, scale * width
    else:
        new_h, new_w = scale * height, short_edge * 1.0
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image with Pillow, as detectron2's ResizeTransform."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")


def prepare_image(image: np.ndarray, params: PreprocessParams, channel_order: str = "BGR") -> np.ndarray:
    """(H, W, 3) uint8 in ``channel_order`` -> resized (h, w, 3) uint8 in the network's order."""
    check_image(image)
    if channel_order != params.input_format:
        image = image[:, :, ::-1]
    h, w = checked_resized_shape(image.shape[0], image.shape[1], params)
    return resize(np.ascontiguousarray(image), h, w)


def checked_resized_shape(height: int, width: int, params: PreprocessParams) -> tuple[int, int]:
    """:func:`resized_shape`, refusing an image so elongated that a side would vanish."""
    h, w = resized_shape(height, width, params.min_size, params.max_size)
    if h < 1 or w < 1:
        raise ValueError(f"a {width}x{height} image is too elongated: resizing it for the model "
                         f"({params.min_size}/{params.max_size}) leaves {w}x{h} pixels")
    return h, w


def padded_shape(sizes: np.ndarray, divisibility: int) -> tuple[int, int]:
    """Smallest (H, W) that holds every size and is a multiple of ``divisibility``."""
    h, w = sizes.max(axis=0)
    if divisibility > 1:
        h = -(-h // divisibility) * divisibility
        w = -(-w // divisibility) * divisibility
    return int(h), int(w)


def batch_shape(sizes: np.ndarray, params: PreprocessParams, pad_to: tuple[int, int] | None) -> tuple[int, int]:
    """The padded (H, W) of a batch of resized ``sizes`` (N, 2): the model's fixed ``pad_to``, which must
    hold every image, else the smallest multiple of the size divisibility."""
    h, w = padded_shape(sizes, params.size_divisibility)
    if pad_to is not None:
        if pad_to[0] < h or pad_to[1] < w:
            raise InstsegError(f"images need a {h}x{w} input but the model's fixed input size is "
                               f"{pad_to[0]}x{pad_to[1]}; export with --size dynamic or a larger --size")
        h, w = pad_to
    return h, w


def preprocess(images: list[np.ndarray], params: PreprocessParams, channel_order: str = "BGR",
               pad_to: tuple[int, int] | None = None) -> Batch:
    """Resize, pad and stack images into one float32 NCHW batch.

    ``pad_to``: a fixed (H, W) for engines with static input shapes; it must hold every image.
    """
    if not images:
        raise ValueError("preprocess needs at least one image")
    resized = [prepare_image(im, params, channel_order) for im in images]
    sizes = np.array([r.shape[:2] for r in resized], dtype=np.int64)
    h, w = batch_shape(sizes, params, pad_to)
    batch = np.empty((len(resized), 3, h, w), dtype=np.float32)
    batch[:] = np.asarray(params.pixel_mean, dtype=np.float32)[None, :, None, None]
    for i, r in enumerate(resized):
        batch[i, :, : r.shape[0], : r.shape[1]] = r.transpose(2, 0, 1)
    original = np.array([im.shape[:2] for im in images], dtype=np.int64)
    return Batch(images=batch, image_sizes=sizes, original_sizes=original)
