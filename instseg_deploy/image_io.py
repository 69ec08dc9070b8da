"""Reading images the way detectron2 users do (``cv2.imread``: 8-bit, 3 channels, BGR)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from instseg_deploy.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Largest image decoded (a 100 MP photo is 300 MB as BGR); checked from the header, before decoding,
# so a small file claiming a huge image fails at once. INSTSEG_MAX_IMAGE_PIXELS raises it.
MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "INSTSEG_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    value = os.environ.get(MAX_PIXELS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_IMAGE_PIXELS


def _check_header_size(path: Path) -> None:
    """Refuse an image whose header declares more than max_image_pixels() pixels (Pillow reads the
    header only; formats it does not know are left to OpenCV's own limit)."""
    limit = max_image_pixels()
    try:
        with Image.open(path) as im:
            width, height = im.size
        size = f"{width}x{height} = {width * height:,} pixels"
    except Image.DecompressionBombError as e:  # Pillow's own limit, at twice its MAX_IMAGE_PIXELS
        width = height = None
        size = str(e).split(" exceeds")[0].lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return
    if width is None or width * height > limit:
        raise ImageError(f"image {path} is too large to decode ({size}; the limit is {limit:,}, "
                         f"set {MAX_PIXELS_ENV} to raise it)")


def _png_bit_depth(path: Path) -> int | None:
    """Bits per channel from a PNG's IHDR chunk (Pillow reports 16-bit RGB PNGs as "RGB")."""
    with open(path, "rb") as f:
        head = f.read(25)
    if len(head) == 25 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def _conversion_note(path: Path) -> str | None:
    """Say what cv2's IMREAD_COLOR will change, from the header only (cheap)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
    except (UnidentifiedImageError, OSError):
        return None  # cv2 may still read it (or will report it)
    if mode.startswith("I;16") or mode in ("I", "F") or (_png_bit_depth(path) or 8) > 8:
        return f"{path.name}: 16/32-bit image scaled down to 8 bits per channel"
    if mode in ("L", "1", "P", "LA", "PA"):
        return f"{path.name}: {mode} image (grayscale or palette) converted to 3-channel BGR"
    if mode in ("RGBA", "CMYK"):
        return f"{path.name}: {mode} image converted to BGR (alpha/ink channel dropped)"
    return None


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """(H, W, 3) uint8 BGR image and a note when the file had to be converted.

    Grayscale is expanded to 3 equal channels, alpha is dropped and 16-bit values are scaled
    to 8 bits -- exactly what ``cv2.imread(path)`` gives detectron2's DefaultPredictor.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    _check_header_size(path)
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode: non-ASCII paths work too
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # e.g. OpenCV's own pixel limit
        raise ImageError(f"cannot decode image {path} ({str(e).strip().splitlines()[-1]})") from None
    if image is None:
        raise ImageError(f"cannot decode image {path} (corrupt or not an image)")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageError(f"image {path} is too small ({image.shape[1]}x{image.shape[0]})")
    return image, _conversion_note(path)


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (non-recursive, sorted) into image paths; missing ones are errors."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise ImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {item}")
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise ImageError(f"no such file or directory: {item}")
    return paths
