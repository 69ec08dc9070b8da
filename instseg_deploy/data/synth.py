"""A generated COCO-format instance-segmentation dataset of coloured shapes.

COCO cannot be downloaded on our machines, so demos, tests, training smoke runs and benchmarks
use this instead. Each image has a textured background and 1..max_instances shapes that occlude
each other; the annotations describe only what is visible.

    >>> from instseg_deploy.data.synth import generate
    >>> generate("data/shapes", 100, splits={"train": 0.8, "val": 0.2})
    {'train': PosixPath('data/shapes/train/annotations.json'), 'val': PosixPath(...)}

Layout without splits: ``out_dir/images/000001.jpg ...`` and ``out_dir/annotations.json``.
With splits: ``out_dir/<split>/images/...`` and ``out_dir/<split>/annotations.json``. An image's
file name is its index in the whole set, so names are unique across splits, and image ``i`` is
the same picture whatever ``num_images`` or ``splits`` are.
"""

from __future__ import annotations

import colorsys
import json
import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from instseg_deploy.errors import InstsegError

CLASS_NAMES = ("disc", "square", "triangle", "ring")  # COCO category ids 1..4 in this order
MIN_VISIBLE_AREA = 30  # pixels: smaller remnants of an occluded shape are not worth a label
JPEG_QUALITY = 95

_MIN_RADIUS = 6.0  # the smallest shape still covers > MIN_VISIBLE_AREA (triangle: 1.3 r^2 = 47 px)
_MAX_RADIUS = 0.3  # of the short side: at 256 px a disc reaches COCO's "large" (> 96^2 px)
_MAX_TILT = math.radians(20)  # "slight" rotation of squares and triangles
_MIN_SIDE = 32  # below this the size range of shapes collapses


@dataclass(frozen=True)
class _Instance:
    """One visible shape: its mask inside the box whose top-left corner is (x0, y0)."""

    category_id: int
    x0: int
    y0: int
    mask: np.ndarray  # (h, w) bool, the visible pixels within the box
    prefer_polygon: bool  # drawn from the seed; falls back to RLE for holes or several pieces


def generate(
    out_dir: str | os.PathLike[str],
    num_images: int,
    seed: int = 0,
    splits: Mapping[str, float | int] | None = None,
    image_size: tuple[int, int] = (256, 512),
    max_instances: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write a shapes dataset in COCO instance format and return its annotation files.

    Args:
        out_dir: directory to create; it must not exist or be empty.
        num_images: images in total, >= 1.
        seed: same seed -> byte-identical annotations and identical image pixels.
        splits: None for one set, else {name: fraction} with fractions summing to 1, or
            {name: count} with ints summing to ``num_images``. Images are shuffled into splits.
        image_size: (min_side, max_side); width and height are each drawn from this range.
        max_instances: each image gets 1..max_instances shapes (fewer annotations where
            shapes are hidden by later ones).
        progress: called as ``progress(done, num_images)`` after each image.

    Returns:
        {split name, or "all" when splits is None: path of that split's annotations.json}.

    Raises:
        InstsegError: out_dir is not empty, or an argument is invalid. Nothing is left behind
        on any failure: the set is built in a temporary directory next to out_dir and renamed
        into place at the end.
    """
    out_dir = Path(out_dir)
    _check_args(num_images, seed, image_size, max_instances)
    counts = _split_counts(splits, num_images)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InstsegError(
            f"{out_dir} already exists and is not empty; choose a new directory or delete it"
        )

    # Which image goes to which split: a seeded shuffle of its own, so splits are random but
    # reproducible and do not change the images themselves.
    order = _rng(seed, 1).permutation(num_images)
    members: dict[str, list[int]] = {}
    start = 0
    for name, count in counts.items():
        members[name] = sorted(int(i) for i in order[start : start + count])
        start += count

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        done = 0
        for name, indices in members.items():
            split_dir = tmp if splits is None else tmp / name
            images_dir = split_dir / "images"
            images_dir.mkdir(parents=True)
            images: list[dict] = []
            annotations: list[dict] = []
            for image_id, index in enumerate(indices, start=1):
                # One stream per image index: image i does not depend on the others.
                image, instances = _render(_rng(seed, 0, index), image_size, max_instances)
                file_name = f"{index + 1:06d}.jpg"
                _write_jpeg(images_dir / file_name, image)
                height, width = image.shape[:2]
                images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
                for inst in instances:
                    annotations.append(_annotation(inst, height, width, image_id, len(annotations) + 1))
                done += 1
                if progress is not None:
                    progress(done, num_images)
            coco = {
                "info": {"description": "instseg_deploy synthetic shapes", "seed": int(seed), "split": name},
                "licenses": [],
                "images": images,
                "annotations": annotations,
                "categories": [
                    {"id": i, "name": n, "supercategory": "shape"}
                    for i, n in enumerate(CLASS_NAMES, start=1)
                ],
            }
            # Compact and key-ordered as built: byte-identical for the same seed.
            text = json.dumps(coco, separators=(",", ":")) + "\n"
            (split_dir / "annotations.json").write_text(text, encoding="utf-8")
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if splits is None:
        return {"all": out_dir / "annotations.json"}
    return {name: out_dir / name / "annotations.json" for name in members}


def _check_args(num_images: int, seed: int, image_size: tuple[int, int], max_instances: int) -> None:
    """Raise InstsegError for arguments that cannot make a dataset."""
    if not _is_int(num_images) or num_images < 1:
        raise InstsegError(f"num_images must be an integer >= 1, got {num_images!r}")
    if not _is_int(seed) or seed < 0:
        raise InstsegError(f"seed must be an integer >= 0, got {seed!r}")
    if (
        len(image_size) != 2
        or not all(_is_int(s) for s in image_size)
        or not _MIN_SIDE <= image_size[0] <= image_size[1]
    ):
        raise InstsegError(
            f"image_size must be (min_side, max_side) with {_MIN_SIDE} <= min_side <= max_side, "
            f"got {image_size!r}"
        )
    if not _is_int(max_instances) or max_instances < 1:
        raise InstsegError(f"max_instances must be an integer >= 1, got {max_instances!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _split_counts(splits: Mapping[str, float | int] | None, num_images: int) -> dict[str, int]:
    """Images per split, in the mapping's order: ints are counts, floats are fractions."""
    if splits is None:
        return {"all": num_images}
    if not splits:
        raise InstsegError("splits is empty; pass None for a single set")
    for name in splits:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise InstsegError(f"split name {name!r} is not usable as a directory name")
    values = list(splits.values())
    if all(_is_int(v) for v in values):
        if min(values) < 1 or sum(values) != num_images:
            raise InstsegError(
                f"split counts must be >= 1 and sum to num_images={num_images}, got {dict(splits)}"
            )
        return {name: int(v) for name, v in splits.items()}
    if not all(isinstance(v, numbers.Real) and not _is_int(v) for v in values):
        raise InstsegError(
            f"splits must be all fractions (floats) or all counts (ints), got {dict(splits)}"
        )
    if not all(0.0 < v <= 1.0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise InstsegError(f"split fractions must be in (0, 1] and sum to 1, got {dict(splits)}")
    # Largest remainder: counts sum to num_images exactly, each within 1 of its fraction.
    exact = [float(v) * num_images for v in values]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: num_images - sum(counts)]:
        counts[i] += 1
    result = dict(zip(splits, counts))
    empty = [name for name, c in result.items() if c == 0]
    if empty:
        raise InstsegError(
            f"split(s) {empty} would get no image out of {num_images}; "
            "use more images or larger fractions"
        )
    return result


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent PCG64 stream per (seed, key): no global random state anywhere."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished set to out_dir in one step (the directory may exist, if empty)."""
    try:
        if out_dir.is_dir():
            out_dir.rmdir()  # fails if something appeared in it meanwhile: we never overwrite
        os.rename(tmp, out_dir)
    except OSError as e:
        raise InstsegError(f"cannot move the generated dataset to {out_dir}: {e.strerror}") from e


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    """Encode in memory so a full disk raises OSError instead of imwrite returning False."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise InstsegError(f"cannot encode {path.name} as JPEG")
    path.write_bytes(data.tobytes())


def _colour(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> np.ndarray:
    """A random colour, (3,) float32 in 0..255; HSV so we can keep backgrounds muted."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb, dtype=np.float32) * 255


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Gradient + smooth colour blobs + maybe stripes or a checker: (3, H, W) float32, 0..255.

    Channels first: numpy broadcasts a (3, 1, 1) colour over whole rows, several times faster
    than over (H, W, 3) pixels with an inner loop of length 3.
    """
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    t = x * math.cos(angle) + y * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = _colour(rng, (0.2, 0.8), (0.3, 0.9)), _colour(rng, (0.2, 0.8), (0.3, 0.9))
    image = c0[:, None, None] + t * (c1 - c0)[:, None, None]

    # Blobs of colour at a random scale, so backgrounds are not just a ramp.
    cells = int(rng.integers(2, 9))
    low = rng.standard_normal((cells, cells, 3)).astype(np.float32) * rng.uniform(10, 35)
    image += cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)

    # Edges that are not objects (stripes, checkers) make the task less trivial.
    kind = rng.integers(3)  # 0 stripes, 1 checker, 2 none
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(8, 60)
    weight = rng.uniform(0.15, 0.45)
    c2 = _colour(rng, (0.2, 0.8), (0.2, 0.9))[:, None, None]
    hard = rng.random() < 0.5
    u = x * math.cos(angle) + y * math.sin(angle)
    if kind == 0:
        pattern = 0.5 + 0.5 * np.sin(u * (2 * math.pi / period))
        if hard:
            pattern = (pattern > 0.5).astype(np.float32)
    elif kind == 1:
        v = -x * math.sin(angle) + y * math.cos(angle)
        pattern = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind != 2:
        image += (weight * pattern) * (c2 - image)
    return image


def _shape_alpha(
    kind: str, box: tuple[int, int, int, int], cx: float, cy: float, r: float, tilt: float, inner: float
) -> np.ndarray:
    """Anti-aliased coverage of one shape inside box (x0, y0, x1, y1): (h, w) uint8, 0..255.

    r is the circumradius; cv2's fixed-point ``shift`` keeps sub-pixel positions and sizes.
    """
    x0, y0, x1, y1 = box
    alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift, one = 4, 16
    centre = (round((cx - x0) * one), round((cy - y0) * one))
    if kind in ("disc", "ring"):
        cv2.circle(alpha, centre, round(r * one), 255, -1, cv2.LINE_AA, shift)
        if kind == "ring":  # punch the hole: what is underneath shows through it
            cv2.circle(alpha, centre, round(r * inner * one), 0, -1, cv2.LINE_AA, shift)
    else:
        sides = 4 if kind == "square" else 3
        # Upright square / triangle pointing up, then tilted a little.
        start = -math.pi / 4 if sides == 4 else -math.pi / 2
        angles = start + tilt + np.arange(sides) * (2 * math.pi / sides)
        pts = np.stack([cx - x0 + r * np.cos(angles), cy - y0 + r * np.sin(angles)], axis=1)
        cv2.fillPoly(alpha, [np.round(pts * one).astype(np.int32)], 255, cv2.LINE_AA, shift)
    return alpha


def _render(
    rng: np.random.Generator, image_size: tuple[int, int], max_instances: int
) -> tuple[np.ndarray, list[_Instance]]:
    """One image and its visible instances.

    Returns:
        image: (H, W, 3) uint8, BGR as cv2 writes it.
        instances: visible shapes with area >= MIN_VISIBLE_AREA, in drawing order.
    """
    height, width = (int(s) for s in rng.integers(image_size[0], image_size[1] + 1, size=2))
    image = _background(rng, height, width)
    # owner[y, x] = 1-based index of the topmost shape there; 0 is background. Later shapes
    # overwrite earlier ones, so "owner == k" is exactly shape k's visible part.
    owner = np.zeros((height, width), np.int32)
    r_min, r_max = _MIN_RADIUS, max(_MIN_RADIUS, _MAX_RADIUS * min(height, width))
    shapes = []
    for k in range(1, int(rng.integers(1, max_instances + 1)) + 1):
        category = int(rng.integers(len(CLASS_NAMES)))
        # Log-uniform size: COCO's small, medium and large areas all occur often.
        r = math.exp(rng.uniform(math.log(r_min), math.log(r_max)))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)  # may hang over the border
        tilt = rng.uniform(-_MAX_TILT, _MAX_TILT)
        inner = rng.uniform(0.4, 0.7)  # ring hole radius / outer radius
        colour = _colour(rng, (0.5, 1.0), (0.35, 1.0))
        light, shading = rng.uniform(0, 2 * math.pi), rng.uniform(0.15, 0.45)
        stripes = rng.random() < 0.35
        stripe_angle, stripe_freq = rng.uniform(0, math.pi), rng.uniform(1.5, 5)
        # Rings and masks split by occlusion fall back to RLE, so ~half end up as polygons.
        prefer_polygon = bool(rng.random() < 0.6)

        box = (max(math.floor(cx - r) - 1, 0), max(math.floor(cy - r) - 1, 0),
               min(math.ceil(cx + r) + 2, width), min(math.ceil(cy + r) + 2, height))
        x0, y0, x1, y1 = box
        alpha = _shape_alpha(CLASS_NAMES[category], box, cx, cy, r, tilt, inner)
        # Directional shading (and sometimes stripes) so shapes are not flat fills.
        dx = (np.arange(x0, x1, dtype=np.float32)[None, :] - cx) / r
        dy = (np.arange(y0, y1, dtype=np.float32)[:, None] - cy) / r
        shade = 1 + shading * (dx * math.cos(light) + dy * math.sin(light))
        if stripes:
            phase = dx * math.cos(stripe_angle) + dy * math.sin(stripe_angle)
            shade = shade * (1 + 0.15 * np.sin(phase * (2 * math.pi * stripe_freq)))
        a = alpha.astype(np.float32) / 255
        crop = image[:, y0:y1, x0:x1]
        crop += a * (colour[:, None, None] * shade - crop)
        owner[y0:y1, x0:x1][alpha >= 128] = k  # the label is where the shape covers >= half a pixel
        shapes.append((category, box, prefer_polygon))

    # Sensor-like grain over everything (one plane, as luminance noise: 3x cheaper), then 8 bits.
    image += rng.standard_normal((height, width), dtype=np.float32) * rng.uniform(1, 4)
    image = cv2.merge([np.clip(c + 0.5, 0, 255).astype(np.uint8) for c in image])

    instances = []
    for k, (category, (x0, y0, x1, y1), prefer_polygon) in enumerate(shapes, start=1):
        visible = owner[y0:y1, x0:x1] == k
        if int(visible.sum()) >= MIN_VISIBLE_AREA:
            instances.append(_Instance(category + 1, x0, y0, visible, prefer_polygon))
    return image, instances


def _annotation(inst: _Instance, height: int, width: int, image_id: int, ann_id: int) -> dict:
    """The COCO annotation of one visible instance; bbox and area come from its mask."""
    cols, rows = np.flatnonzero(inst.mask.any(axis=0)), np.flatnonzero(inst.mask.any(axis=1))
    bbox = [float(inst.x0 + cols[0]), float(inst.y0 + rows[0]),
            float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]
    segmentation = _polygon(inst.mask, inst.x0, inst.y0) if inst.prefer_polygon else None
    if segmentation is None:
        full = np.zeros((height, width), np.uint8)
        full[inst.y0 : inst.y0 + inst.mask.shape[0], inst.x0 : inst.x0 + inst.mask.shape[1]] = inst.mask
        rle = mask_utils.encode(np.asfortranarray(full))
        segmentation = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": inst.category_id,
        "bbox": bbox,
        "area": float(inst.mask.sum()),
        "iscrowd": 0,
        "segmentation": segmentation,
    }


def _polygon(mask: np.ndarray, x0: int, y0: int) -> list[list[float]] | None:
    """One COCO polygon tracing mask's outline, or None if it has a hole or several pieces.

    A polygon through boundary pixel *centres* (what findContours gives) loses about half of
    every boundary pixel when pycocotools rasterises it (COCO's pixel x spans [x, x+1]). Tracing
    the mask upsampled 2x instead puts the outline a quarter pixel inside the true pixel edges,
    so every mask pixel's centre is inside and every other one outside: rasterising the polygon
    gives back the mask exactly.
    """
    # Padded so that no outline runs along the array's border.
    up = np.pad(mask.repeat(2, axis=0).repeat(2, axis=1).astype(np.uint8), 1)
    # RETR_CCOMP returns holes as contours too, so exactly one contour = one piece without holes.
    contours, _ = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) != 1:
        return None
    pts = contours[0].reshape(-1, 2).astype(np.float64)
    # Upsampled pixel u (after removing the pad) spans [u/2, u/2 + 0.5]; its centre is u/2 + 0.25.
    xy = (pts - 1) / 2 + 0.25 + (x0, y0)
    return [[float(v) for v in xy.ravel()]]  # >= 4 points: the smallest outline is a 2x2 block
