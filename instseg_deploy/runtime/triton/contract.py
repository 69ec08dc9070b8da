"""The tensors of a served instseg model: what `instseg export --to triton` serves, `instseg serve`
runs and `--backend triton` sends. Defined once for the server's Python model and the client.

Every tensor has a leading batch dimension of 1 per request (the served model batches requests
itself, see serving.triton). Text travels as UTF-8 JSON in UINT8 tensors rather than as BYTES:
the Python backend stub bundled with the PyPI server reads numpy arrays through a pybind11 that
predates numpy 2 (BYTES and numpy-made tensors arrive empty there), while UINT8 tensors pass as
DLPack without numpy. Production Triton reads the same tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

# Inputs; a request gives exactly one of the two.
IMAGE_BYTES = "IMAGE_BYTES"  # (1, L) uint8: an encoded image file (JPEG, PNG, ...), decoded as cv2.imread does
IMAGE = "IMAGE"  # (1, H, W, 3) uint8: raw pixels in BGR order (cv2's)
INPUTS = (IMAGE_BYTES, IMAGE)

# Outputs, N detections of the request's image, sorted by decreasing score.
BOXES = "BOXES"  # (1, N, 4) float32 xyxy in image pixels
SCORES = "SCORES"  # (1, N) float32
CLASSES = "CLASSES"  # (1, N) int64, 0-based contiguous
IMAGE_SIZE = "IMAGE_SIZE"  # (1, 2) int64 (height, width): the size of the RLEs
MASKS_RLE = "MASKS_RLE"  # (1, L) uint8: JSON list of N COCO compressed RLE counts strings
CLASS_NAMES = "CLASS_NAMES"  # (1, L) uint8: JSON list of N class names
OUTPUTS = (BOXES, SCORES, CLASSES, IMAGE_SIZE, MASKS_RLE, CLASS_NAMES)

# config.pbtxt parameter holding the served model's instseg metadata (class names, preprocessing,
# thresholds) as JSON, so a client knows the model without its file.
METADATA_PARAMETER = "instseg_metadata"

# Largest encoded image a request may carry; larger requests are refused before decoding.
MAX_IMAGE_BYTES = 64 * 1024 * 1024

# Tensor datatypes in the KServe v2 protocol's names (config.pbtxt uses TYPE_ + the same).
DATATYPES = {IMAGE_BYTES: "UINT8", IMAGE: "UINT8", BOXES: "FP32", SCORES: "FP32", CLASSES: "INT64",
             IMAGE_SIZE: "INT64", MASKS_RLE: "UINT8", CLASS_NAMES: "UINT8"}
# Shapes without the batch dimension (-1: variable).
DIMS = {IMAGE_BYTES: (-1,), IMAGE: (-1, -1, 3), BOXES: (-1, 4), SCORES: (-1,), CLASSES: (-1,), IMAGE_SIZE: (2,),
        MASKS_RLE: (-1,), CLASS_NAMES: (-1,)}


def encode_text(value: Any) -> np.ndarray:
    """A JSON-serialisable value -> (1, L) uint8 UTF-8 JSON."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return np.frombuffer(data, dtype=np.uint8).reshape(1, -1)


def decode_text(array: np.ndarray) -> Any:
    """The inverse of :func:`encode_text`."""
    return json.loads(np.ascontiguousarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


@dataclass
class Response:
    """One request's outputs, unbatched: boxes (N, 4) float32, scores (N,), classes (N,) int64,
    image_size (H, W), rle_counts and class_names N strings each."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    image_size: tuple[int, int]
    rle_counts: list[str]
    class_names: list[str]

    def tensors(self) -> dict[str, np.ndarray]:
        """The output tensors, batch dimension added."""
        return {BOXES: self.boxes.astype(np.float32).reshape(1, -1, 4),
                SCORES: self.scores.astype(np.float32).reshape(1, -1),
                CLASSES: self.classes.astype(np.int64).reshape(1, -1),
                IMAGE_SIZE: np.asarray(self.image_size, np.int64).reshape(1, 2),
                MASKS_RLE: encode_text(self.rle_counts), CLASS_NAMES: encode_text(self.class_names)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> Response:
        boxes = np.asarray(tensors[BOXES], np.float32).reshape(-1, 4)
        height, width = (int(v) for v in np.asarray(tensors[IMAGE_SIZE]).reshape(2))
        return cls(boxes, np.asarray(tensors[SCORES], np.float32).reshape(-1),
                   np.asarray(tensors[CLASSES], np.int64).reshape(-1), (height, width),
                   decode_text(tensors[MASKS_RLE]), decode_text(tensors[CLASS_NAMES]))
