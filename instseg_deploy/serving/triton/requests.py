"""What the served Python model does with each request, without Triton: tensors in, an image out;
detections in, the response tensors out (runtime.triton.contract). The Triton glue is python_model.py."""

from __future__ import annotations

import numpy as np

from instseg_deploy.errors import ServingError
from instseg_deploy.processing.masks import as_format
from instseg_deploy.processing.preprocess import PreprocessParams, checked_resized_shape, padded_shape
from instseg_deploy.runtime.triton.contract import IMAGE, IMAGE_BYTES, MAX_IMAGE_BYTES, Response
from instseg_deploy.structures import Instances


def image_from_inputs(image_bytes: np.ndarray | None, image: np.ndarray | None,
                      max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """The (H, W, 3) uint8 BGR image of a request: ``image_bytes`` (1, L) uint8 an encoded file, or
    ``image`` (1, H, W, 3) uint8 raw pixels; an encoded image above ``max_bytes`` is refused before
    decoding. A :class:`ServingError` (or ImageError) names what is wrong."""
    from instseg_deploy.image_io import decode_image

    if (image_bytes is None) == (image is None):
        raise ServingError(f"a request carries exactly one of {IMAGE_BYTES} (an encoded image file) or {IMAGE} "
                           f"(raw HxWx3 uint8 pixels), got {'both' if image is not None else 'neither'}")
    if image is not None:
        if image.dtype != np.uint8 or image.ndim != 4 or image.shape[0] != 1 or image.shape[3] != 3:
            raise ServingError(f"{IMAGE} must be (1, H, W, 3) uint8, got {tuple(image.shape)} {image.dtype}")
        if min(image.shape[1:3]) < 2:
            raise ServingError(f"{IMAGE} is too small ({image.shape[2]}x{image.shape[1]})")
        return np.ascontiguousarray(image[0])
    if image_bytes.dtype != np.uint8 or image_bytes.ndim != 2 or image_bytes.shape[0] != 1:
        raise ServingError(f"{IMAGE_BYTES} must be (1, L) uint8, got {tuple(image_bytes.shape)} {image_bytes.dtype}")
    if image_bytes.size == 0:
        raise ServingError(f"{IMAGE_BYTES} is empty")
    if image_bytes.size > max_bytes:
        raise ServingError(f"{IMAGE_BYTES} holds {image_bytes.size:,} bytes, above the limit of {max_bytes:,}")
    return decode_image(image_bytes.reshape(-1).tobytes(), "in the request")


def network_shape(image: np.ndarray, params: PreprocessParams) -> tuple[int, int]:
    """The padded (H, W) network input ``image`` gets when predicted alone.

    A batch pads every image to the largest, and padding changes a Mask R-CNN's features near the
    image's bottom/right edge, so a request's answer would depend on which requests it was batched
    with. Batching only images of the same network shape keeps every answer equal to the answer for
    that image alone (same-size streams, e.g. one camera's frames, still batch fully)."""
    resized = checked_resized_shape(image.shape[0], image.shape[1], params)
    return padded_shape(np.array([resized]), params.size_divisibility)


def response_from_instances(instances: Instances, class_names: tuple[str, ...]) -> Response:
    """One image's detections as the served outputs: masks as COCO RLE counts (never dense)."""
    rles = as_format(instances, "rle")
    return Response(instances.boxes, instances.scores, instances.classes, tuple(instances.image_size),
                    [r["counts"] for r in rles],  # processing.masks gives str counts
                    [class_names[int(c)] for c in instances.classes])
