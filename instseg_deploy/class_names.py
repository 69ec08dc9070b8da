"""Class names for a model when its checkpoint does not carry them."""

from __future__ import annotations

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


def parse_class_names(spec: str, num_classes: int) -> tuple[str, ...]:
    """Names from a comma-separated list or a text file with one name per line."""
    from pathlib import Path

    from instseg_deploy.errors import ConfigError

    path = Path(spec)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(names) != num_classes:
        raise ConfigError(f"got {len(names)} class names but the model has {num_classes} classes")
    return tuple(names)
