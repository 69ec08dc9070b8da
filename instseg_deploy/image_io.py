"""Reading images the way detectron2 users do (``cv2.imread``: 8-bit, 3 channels, BGR)."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from instseg_deploy.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Files predicted as videos (video_io reads them); recognised by name, like images in folders.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Largest image decoded (a 100 MP photo is 300 MB as BGR); checked from the header, before decoding,
# so a small file claiming a huge image fails at once. INSTSEG_MAX_IMAGE_PIXELS raises it.
MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "INSTSEG_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    value = os.environ.get(MAX_PIXELS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_IMAGE_PIXELS


def _check_header_size(source, label) -> None:
    """Refuse an image whose header declares more than max_image_pixels() pixels (Pillow reads the
    header only; formats it does not know are left to OpenCV's own limit). ``source``: a path or a
    binary file object."""
    limit = max_image_pixels()
    try:
        with Image.open(source) as im:
            width, height = im.size
        size = f"{width}x{height} = {width * height:,} pixels"
    except Image.DecompressionBombError as e:  # Pillow's own limit, at twice its MAX_IMAGE_PIXELS
        width = height = None
        size = str(e).split(" exceeds")[0].lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return
    if width is None or width * height > limit:
        raise ImageError(f"image {label} is too large to decode ({size}; the limit is {limit:,}, "
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
    _check_header_size(path, path)
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode: non-ASCII paths work too
    return _decode(data, path), _conversion_note(path)


def decode_image(data: bytes, label: str = "image") -> np.ndarray:
    """An encoded image file's bytes (e.g. a server request's) -> (H, W, 3) uint8 BGR, decoded exactly
    as :func:`read_image` decodes the same file; ``label`` names it in errors."""
    import io

    _check_header_size(io.BytesIO(data), label)
    return _decode(np.frombuffer(data, dtype=np.uint8), label)


def _decode(data: np.ndarray, label) -> np.ndarray:
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # e.g. OpenCV's own pixel limit
        raise ImageError(f"cannot decode image {label} ({str(e).strip().splitlines()[-1]})") from None
    if image is None:
        raise ImageError(f"cannot decode image {label} (corrupt or not an image)")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageError(f"image {label} is too small ({image.shape[1]}x{image.shape[0]})")
    return image


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


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


@dataclass
class Inputs:
    """What a list of inputs names: ``paths``, the images and videos to predict (in the order given, each
    once), and ``other``, the files that folders and globs held that are neither (not predicted)."""

    paths: list[Path] = field(default_factory=list)
    other: list[Path] = field(default_factory=list)


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    """The files of ``folder`` (and of its subfolders when ``recursive``), sorted; hidden ones (a name
    starting with '.') left out, as a glob's '*' leaves them out."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not any(part.startswith(".")
                                                               for part in p.relative_to(folder).parts))


def _expand(item: str, recursive: bool) -> tuple[list[Path], str]:
    """(the files ``item`` names, what it is, for messages); a missing path or an empty glob raises."""
    path = Path(item)
    if path.is_file():
        return [path], ""
    if path.is_dir():
        return _folder_files(path, recursive), f"directory {path}"
    if glob.has_magic(item):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(item), recursive=recursive))
        files = [p for p in matches if p.is_file()]
        if not files:  # a missing path with [ or * in its name reads as a glob too: both said
            raise ImageError(f"no such file or directory, and no files match the glob: {item}")
        return files, f"the files matching {item!r}"
    raise ImageError(f"no such file or directory: {item}")


def expand_inputs(inputs: list[str | os.PathLike], recursive: bool = False) -> Inputs:
    """Files (predicted whatever their name), folders (their images and videos; subfolders too when
    ``recursive``) and globs (``imgs/*.jpg``; ``**`` matches subfolders when ``recursive``, as in
    :func:`glob.glob`). A missing path, a glob matching no file, or a folder or glob holding no image or
    video raises :class:`ImageError`."""
    result = Inputs()
    for item in inputs:
        files, what = _expand(str(item), recursive)
        media = [p for p in files if not what or _is_media(p)]
        if not media:
            raise ImageError(f"no images or videos ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}) in {what}")
        result.paths.extend(media)
        result.other.extend(p for p in files if what and not _is_media(p))
    # A file named twice (a folder and a glob, or through a symlink that ** follows) is predicted once.
    result.paths = _once(result.paths)
    predicted = {p.resolve() for p in result.paths}
    result.other = [p for p in _once(result.other) if p.resolve() not in predicted]
    return result


def _once(paths: list[Path]) -> list[Path]:
    """``paths`` with each file once, where it first came, under its shortest name (not the one through
    a symlinked folder)."""
    kept: dict[Path, Path] = {}
    for p in paths:
        real = p.resolve()
        if real not in kept or len(p.parts) < len(kept[real].parts):
            kept[real] = p
    return list(kept.values())
