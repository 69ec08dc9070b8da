"""Training records from a COCO dataset: annotations checked, bad images reported by id.

detectron2 drops crowd annotations and (FILTER_EMPTY_ANNOTATIONS) images without any
annotation left. Everything else that would crash or silently corrupt training -- a box with
no area or outside its image, a mask that is not a valid polygon or RLE, an unknown category,
an image file that is not an image or whose size differs from the annotations -- is a
*problem*: the run is refused with the offending ids, or those images are skipped when the
user asks for it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from instseg_deploy.data.coco import CocoDataset, DatasetError, read_json

# A COCO compressed RLE: {"size": [h, w], "counts": bytes}.
Segmentation = Union[list[np.ndarray], dict]

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF rotations by 90 degrees: decoders swap w and h


@dataclass(frozen=True)
class TrainAnnotation:
    """One instance: box xyxy in image pixels, contiguous class, polygons or compressed RLE."""

    id: int
    category: int
    box: tuple[float, float, float, float]
    segmentation: Segmentation


@dataclass
class TrainRecord:
    image_id: int
    path: Path
    height: int
    width: int
    annotations: list[TrainAnnotation]


@dataclass(frozen=True)
class Problem:
    image_id: int
    annotation_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"image id {self.image_id}"
        if self.annotation_id is not None:
            where += f" (annotation id {self.annotation_id})"
        return f"{where}: {self.reason}"


@dataclass
class DataReport:
    """What loading kept and dropped, for the user."""

    num_images: int = 0
    num_instances: int = 0
    empty_image_ids: list[int] = field(default_factory=list)
    num_crowd: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped_image_ids: list[int] = field(default_factory=list)

    def messages(self) -> list[str]:
        lines = [f"training set: {self.num_images} images, {self.num_instances} instances"]
        if self.empty_image_ids:
            lines.append(f"dropped {len(self.empty_image_ids)} image(s) without annotations "
                         f"(DATALOADER.FILTER_EMPTY_ANNOTATIONS), e.g. ids {self.empty_image_ids[:5]}")
        if self.num_crowd:
            lines.append(f"ignored {self.num_crowd} crowd annotation(s) (iscrowd=1), as detectron2 does")
        if self.skipped_image_ids:
            lines.append(f"skipped {len(self.skipped_image_ids)} bad image(s): {describe_problems(self.problems)}")
        return lines


def describe_problems(problems: list[Problem], limit: int = 5) -> str:
    shown = "; ".join(str(p) for p in problems[:limit])
    return shown + (f"; and {len(problems) - limit} more" if len(problems) > limit else "")


def _finite_numbers(values: Any) -> bool:
    return isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _check_box(bbox: Any, height: int, width: int) -> tuple[tuple[float, float, float, float] | None, str | None]:
    if not _finite_numbers(bbox) or len(bbox) != 4:
        return None, f"bbox {bbox!r} is not 4 finite numbers"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, f"degenerate box {list(bbox)} (width and height must be > 0)"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None, f"box {list(bbox)} lies outside its {width}x{height} image"
    return (x, y, x + w, y + h), None


def _check_segmentation(segm: Any, height: int, width: int) -> tuple[Segmentation | None, str | None]:
    """Polygons (invalid ones dropped, as detectron2 does) or a compressed RLE."""
    if isinstance(segm, list):
        polygons = [np.asarray(p, dtype=np.float64) for p in segm
                    if _finite_numbers(p) and len(p) % 2 == 0 and len(p) >= 6]
        if not polygons:
            return None, "no valid polygon (each needs an even number >= 6 of finite coordinates)"
        return polygons, None
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [height, width]:
            return None, f"RLE size {segm['size']} differs from the image size [{height}, {width}]"
        try:
            rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else \
                {"size": [height, width], "counts": segm["counts"].encode("ascii") if isinstance(segm["counts"], str)
                 else segm["counts"]}
            if int(mask_utils.area(rle)) <= 0:
                return None, "empty RLE mask"
        except (TypeError, ValueError, AttributeError, UnicodeEncodeError) as e:
            return None, f"unreadable RLE ({e})"
        return rle, None
    if segm is None:
        return None, "no segmentation (Mask R-CNN trains on masks)"
    return None, f"segmentation is neither polygons nor an RLE ({type(segm).__name__})"


def _check_annotation(ann: dict, record: TrainRecord, category_index: dict[int, int]
                      ) -> tuple[TrainAnnotation | None, str | None]:
    if ann.get("category_id") not in category_index:
        return None, f"category id {ann.get('category_id')!r} is not in the categories"
    box, reason = _check_box(ann.get("bbox"), record.height, record.width)
    if box is None:
        return None, reason
    segm, reason = _check_segmentation(ann.get("segmentation"), record.height, record.width)
    if segm is None:
        return None, reason
    return TrainAnnotation(int(ann.get("id", -1)), category_index[ann["category_id"]], box, segm), None


def _image_problem(record: TrainRecord) -> str | None:
    """What is wrong with the image file, judged from its header (cheap; decoding comes later)."""
    try:
        with Image.open(record.path) as im:
            width, height = im.size
            if im.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
    except (UnidentifiedImageError, OSError) as e:
        return f"{record.path.name} is not a readable image ({type(e).__name__})"
    if (width, height) != (record.width, record.height):
        return (f"{record.path.name} is {width}x{height} but the annotations say "
                f"{record.width}x{record.height}")
    return None


def load_training_records(dataset: CocoDataset, filter_empty: bool = True, skip_bad: bool = False,
                          check_files: bool = True) -> tuple[list[TrainRecord], DataReport]:
    """Records of ``dataset`` with checked annotations, in the dataset's image order.

    Raises DatasetError naming the offending image and annotation ids when something is
    unusable and ``skip_bad`` is False; with ``skip_bad`` those images are left out and listed
    in the report.
    """
    data = read_json(dataset.annotations_path, "annotations file")
    annotations = data.get("annotations")
    if not isinstance(annotations, list):
        raise DatasetError(f"{dataset.annotations_path} has no 'annotations' list to train on")
    category_index = {cat_id: k for k, cat_id in enumerate(dataset.category_ids)}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in annotations:
        if isinstance(ann, dict):
            by_image[ann.get("image_id")].append(ann)
    report = DataReport()
    records: list[TrainRecord] = []
    bad: set[int] = set()
    for image in dataset.images:
        record = TrainRecord(image.id, image.path, image.height, image.width, [])
        for ann in by_image.get(image.id, []):
            if ann.get("iscrowd", 0):
                report.num_crowd += 1
                continue
            checked, reason = _check_annotation(ann, record, category_index)
            if checked is None:
                report.problems.append(Problem(image.id, ann.get("id"), reason))
                bad.add(image.id)
            else:
                record.annotations.append(checked)
        if not record.annotations and image.id not in bad and filter_empty:
            report.empty_image_ids.append(image.id)
            continue
        if check_files:
            reason = _image_problem(record)
            if reason is not None:
                report.problems.append(Problem(image.id, None, reason))
                bad.add(image.id)
        records.append(record)
    if report.problems and not skip_bad:
        raise DatasetError(f"{len(report.problems)} problem(s) in the training data: "
                           f"{describe_problems(report.problems)} -- fix them, or pass --skip-bad-images "
                           "to train without those images")
    records = [r for r in records if r.image_id not in bad]
    report.skipped_image_ids = sorted(bad)
    if not records:
        raise DatasetError(f"no usable training images in {dataset.annotations_path}")
    report.num_images = len(records)
    report.num_instances = sum(len(r.annotations) for r in records)
    return records, report
