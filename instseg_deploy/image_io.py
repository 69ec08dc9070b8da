"""Reading images the way detectron2 users do (``cv2.imread``: 8-bit, 3 channels, BGR)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from instseg_deploy.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode: non-ASCII paths work too
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
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
