"""Class names of a model: the one rule every backend, export and evaluation follows."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from instseg_deploy.errors import ConfigError

log = logging.getLogger(__name__)

# COCO 2017's 80 thing classes in detectron2's contiguous order (sorted category ids).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """COCO's names for an 80-class model, otherwise class_0 .. class_{K-1}."""
    if num_classes == len(COCO_CLASSES):
        return COCO_CLASSES
    return tuple(f"class_{i}" for i in range(num_classes))


def resolve_class_names(num_classes: int, given: Sequence[str] | None = None, carried: Sequence[str] | None = None,
                        dataset: Sequence[str] | None = None) -> tuple[str, ...]:
    """The names to show: ``given`` by the user (their count must match), else those the model ``carried``
    (its checkpoint or exported metadata), else the ``dataset``'s categories, else :func:`default_class_names`.

    Carried names equal to the defaults count as none: files written before a model had names carry them.
    """
    if given is not None:
        return _counted(given, num_classes)
    fallback = default_class_names(num_classes)
    if carried and len(carried) != num_classes:
        log.warning("ignoring the model's %d class names: it has %d classes", len(carried), num_classes)
    for names in (carried, dataset):
        if names and len(names) == num_classes and tuple(names) != fallback:
            return tuple(names)
    return fallback


def read_class_names(spec: str) -> tuple[str, ...]:
    """Names from a comma-separated list or a text file with one name per line."""
    from pathlib import Path

    path = Path(spec)
    if path.is_file():
        return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return tuple(n.strip() for n in spec.split(",") if n.strip())


def parse_class_names(spec: str, num_classes: int) -> tuple[str, ...]:
    """:func:`read_class_names` for a model with ``num_classes`` classes."""
    return _counted(read_class_names(spec), num_classes)


def _counted(names: Sequence[str], num_classes: int) -> tuple[str, ...]:
    if len(names) != num_classes:
        raise ConfigError(f"got {len(names)} class names but the model has {num_classes} classes")
    return tuple(names)
