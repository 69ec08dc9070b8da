"""COCO-format instance segmentation datasets, with detectron2's category mapping."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instseg_deploy.errors import ImageError, InstsegError
from instseg_deploy.image_io import read_image


class DatasetError(InstsegError):
    """A dataset or results file that cannot be used as given."""


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: Path
    height: int
    width: int


@dataclass
class CocoDataset:
    """images in annotation order; ``category_ids[k]`` is the dataset id of contiguous class k
    (sorted ids, as detectron2 maps them); ``class_names[k]`` its name."""

    annotations_path: Path
    images_dir: Path
    images: list[ImageRecord]
    category_ids: list[int]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)


def read_dataset_image(path: Path, image_id: int, height: int, width: int) -> np.ndarray:
    """The (H, W, 3) uint8 BGR image of annotation ``image_id``; a DatasetError naming the id when it
    cannot be read or its size differs from the annotations' ``height`` x ``width``."""
    try:
        image, _ = read_image(path)
    except ImageError as e:
        raise DatasetError(f"image id {image_id}: {e}") from None
    if image.shape[:2] != (height, width):
        raise DatasetError(f"image id {image_id} ({path.name}) is {image.shape[1]}x{image.shape[0]} "
                           f"but the annotations say {width}x{height}")
    return image


def read_json(path: str | os.PathLike, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{what} {path} is not valid JSON ({e})") from None


def coco_root_paths(root: str | os.PathLike, split: str = "val2017") -> tuple[Path, Path]:
    """(images dir, annotations file) of the COCO 2017 layout under ``root``."""
    root = Path(root)
    return root / split, root / "annotations" / f"instances_{split}.json"


# detectron2's root of its builtin datasets (COCO at $DETECTRON2_DATASETS/coco); unlike detectron2 we do not
# default it to ./datasets, so that a stray folder is never evaluated unasked.
DATASETS_ENV = "DETECTRON2_DATASETS"


def resolve_coco_root(images: str | os.PathLike | None, annotations: str | os.PathLike | None,
                      coco_root: str | os.PathLike | None) -> Path | None:
    """The COCO root a command uses: ``coco_root``, else $DETECTRON2_DATASETS/coco when neither
    ``images`` nor ``annotations`` is given and that variable is set; None for --images/--annotations."""
    if coco_root is not None:
        return Path(coco_root)
    datasets = os.environ.get(DATASETS_ENV)
    if images is None and annotations is None and datasets:
        return Path(os.path.expanduser(datasets)) / "coco"
    return None


def dataset_paths(images: str | os.PathLike | None, annotations: str | os.PathLike | None,
                  coco_root: str | os.PathLike | None, split: str = "val2017",
                  what: str = "a dataset") -> tuple[Path, Path]:
    """(images dir, annotations file) from either ``images`` with ``annotations`` or a COCO 2017
    ``coco_root`` (its ``split``; see :func:`resolve_coco_root` for $DETECTRON2_DATASETS): the
    --images/--annotations/--coco-root choice of every command."""
    if coco_root is not None:
        if images is not None or annotations is not None:
            raise DatasetError("give either --coco-root or --images with --annotations, not both")
        return coco_root_paths(coco_root, split)
    root = resolve_coco_root(images, annotations, None)
    if root is not None:
        images_dir, annotations_file = coco_root_paths(root, split)
        if not annotations_file.is_file():
            raise DatasetError(f"no --images/--annotations or --coco-root given, and ${DATASETS_ENV} has no COCO "
                               f"{split} annotations at {annotations_file}")
        return images_dir, annotations_file
    if images is None or annotations is None:
        raise DatasetError(f"{what} is needed: --images DIR --annotations FILE, or --coco-root DIR (or "
                           f"${DATASETS_ENV} with coco/ under it)")
    return Path(images), Path(annotations)


def load_coco_dataset(images_dir: str | os.PathLike, annotations: str | os.PathLike,
                      check_files: bool = True) -> CocoDataset:
    """Read a COCO instances file; every listed image must exist under ``images_dir``."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    data = read_json(annotations, "annotations file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("categories"), list):
        raise DatasetError(f"{annotations} is not a COCO instances file (needs 'images' and 'categories' lists)")
    if not data["categories"]:
        raise DatasetError(f"{annotations} has no categories")
    if not images_dir.is_dir():
        raise DatasetError(f"images folder not found: {images_dir}")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    try:
        images = [ImageRecord(int(im["id"]), images_dir / im["file_name"], int(im["height"]), int(im["width"]))
                  for im in data["images"]]
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{annotations}: an image entry lacks id/file_name/height/width ({e})") from None
    if check_files:
        missing = [im.path.name for im in images if not im.path.is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise DatasetError(f"{len(missing)} image(s) listed in {annotations.name} are missing from "
                               f"{images_dir}: {shown}")
    return CocoDataset(annotations, images_dir, images, [int(c["id"]) for c in cats],
                       tuple(str(c["name"]) for c in cats))


def check_results(results: Any, gt_image_ids: set[int], gt_category_ids: set[int], source: str,
                  image_sizes: dict[int, tuple[int, int]] | None = None) -> list[dict]:
    """Validate a COCO results list against the ground truth; one clear error for what is wrong.

    Polygon segmentations (allowed by the COCO results format) become RLE with the image's
    ``image_sizes[id]`` (height, width), as COCO's own loadRes would need them."""
    if not isinstance(results, list) or any(not isinstance(r, dict) for r in results):
        raise DatasetError(f"{source} is not a COCO results file (expected a JSON list of detections)")
    if not results:
        raise DatasetError(f"{source} holds no detections")
    for i, r in enumerate(results):
        if not {"image_id", "category_id", "score"} <= set(r) or not ({"bbox", "segmentation"} & set(r)):
            raise DatasetError(f"{source}: entry {i} needs image_id, category_id, score and bbox or segmentation")
        if not _finite_number(r["score"]):
            raise DatasetError(f"{source}: entry {i} has score {r['score']!r}, not a finite number")
        if "bbox" in r and not (isinstance(r["bbox"], list) and len(r["bbox"]) == 4
                                and all(_finite_number(v) for v in r["bbox"])):
            raise DatasetError(f"{source}: entry {i} has bbox {str(r['bbox'])[:60]}, not 4 finite numbers [x, y, w, h]")
        if not isinstance(r["image_id"], int) or not isinstance(r["category_id"], int):
            raise DatasetError(f"{source}: entry {i}: image_id and category_id must be integers")
    unknown_images = sorted({r["image_id"] for r in results} - gt_image_ids)
    if unknown_images:
        raise DatasetError(f"{source}: {len(unknown_images)} image id(s) not in the annotations, "
                           f"e.g. {unknown_images[:5]}")
    unknown_cats = sorted({r["category_id"] for r in results} - gt_category_ids)
    if unknown_cats:
        raise DatasetError(f"{source}: category id(s) {unknown_cats[:10]} not in the annotations")
    for i, r in enumerate(results):
        if "segmentation" in r:
            r["segmentation"] = _segmentation_rle(r["segmentation"], (image_sizes or {}).get(r["image_id"]),
                                                  f"{source}: entry {i}")
    return results


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _segmentation_rle(segmentation: Any, size: tuple[int, int] | None, where: str) -> dict:
    """A results entry's mask as compressed RLE: polygons ([[x, y, ...], ...]) are rasterised at the image's
    size; an RLE must be {"size": [h, w], "counts": str or list}."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        counts, rle_size = segmentation.get("counts"), segmentation.get("size")
        if not (isinstance(rle_size, list) and len(rle_size) == 2 and all(isinstance(v, int) and v > 0
                                                                         for v in rle_size)
                and isinstance(counts, (str, list))):
            raise DatasetError(f"{where}: segmentation is not a COCO RLE (needs size [h, w] and counts)")
        if size is not None and tuple(rle_size) != tuple(size):
            raise DatasetError(f"{where}: segmentation size {rle_size} differs from the image's {list(size)}")
        return segmentation
    polygons = segmentation if isinstance(segmentation, list) else None
    if not polygons or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                               and all(_finite_number(v) for v in p) for p in polygons):
        raise DatasetError(f"{where}: segmentation is neither an RLE nor polygons [[x1, y1, x2, y2, x3, y3, ...]]")
    if size is None:
        raise DatasetError(f"{where}: polygon segmentation, but the image's size is unknown")
    rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in polygons], *size))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
