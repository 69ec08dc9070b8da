"""One inference API over every backend: image -> preprocess -> runner -> postprocess -> Instances."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from instseg_deploy.errors import InstsegError
from instseg_deploy.processing.masks import check_mask_format
from instseg_deploy.processing.postprocess import postprocess
from instseg_deploy.processing.preprocess import Batch, PreprocessParams, preprocess
from instseg_deploy.runtime.runner import RawDetections, Runner
from instseg_deploy.structures import Instances

# The score threshold a predictor keeps by default, in the API and `instseg predict` alike: detectron2's
# demo.py --confidence-threshold. AP needs every detection: evaluation passes None (the model's own).
DEFAULT_SCORE_THRESH = 0.5


def checked_score_thresh(meta: dict, score_thresh: float | None, model) -> float | None:
    """``score_thresh`` for an exported (or served) ``model`` whose metadata is ``meta``: below the
    threshold baked into it is an error, except for the default, which then gives the model's own."""
    if score_thresh is not None and score_thresh < meta["postprocess"]["score_thresh"]:
        if score_thresh != DEFAULT_SCORE_THRESH:
            raise InstsegError(f"--score-thresh {score_thresh} is below the threshold baked into {model} "
                               f"({meta['postprocess']['score_thresh']}); re-export with a lower "
                               "MODEL.ROI_HEADS.SCORE_THRESH_TEST")
        return None  # 0.5, the default: a file baked above it keeps its own instead of failing
    return score_thresh


def check_channel_order(channel_order: str) -> str:
    if channel_order not in ("BGR", "RGB"):
        raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {channel_order!r}")
    return channel_order


class Predictor:
    """Runs a model on uint8 images and returns one :class:`Instances` per image.

    Images are (H, W, 3) uint8 arrays in ``channel_order``: "BGR" by default, which is what
    ``cv2.imread`` and detectron2's DefaultPredictor use; pass "RGB" for PIL/imageio arrays.
    The model's own channel order (INPUT.FORMAT) is handled internally. ``mask_format`` says how
    ``Instances.masks`` holds the masks (structures.MASK_FORMATS): "dense" (N, H, W) bool by
    default, "rle", "cropped" or "none"; all give the same pixels, only "dense" allocates N x H x W.

    ``processing_device``: a torch device (the model's GPU) to paste masks on, and to resize and pad
    on when the runner takes device batches (``runner.accepts_device_batch``); None keeps the exact
    host path (processing.device says what differs).
    """

    def __init__(self, runner: Runner, params: PreprocessParams, class_names: tuple[str, ...],
                 score_thresh: float = 0.0, channel_order: str = "BGR", mask_format: str = "dense",
                 processing_device=None):
        self.runner = runner
        self.params = params
        self.class_names = class_names
        self.score_thresh = score_thresh
        self.channel_order = check_channel_order(channel_order)
        self.mask_format = check_mask_format(mask_format)
        self.processing_device = processing_device

    def predict(self, images: list) -> list[Instances]:
        """Run the images as one batch (in chunks when the model has a fixed batch size). Each image is
        an (H, W, 3) uint8 array in ``channel_order``, a PIL image or an image file's path."""
        images = [self.as_array(image) for image in images]
        step = getattr(self.runner, "max_batch", None) or max(len(images), 1)
        results: list[Instances] = []
        for start in range(0, len(images), step):
            results.extend(self._predict_batch(images[start:start + step]))
        return results

    def _predict_batch(self, images: list[np.ndarray]) -> list[Instances]:
        batch = self.preprocess_batch(images)
        return self.postprocess_batch(batch, self.runner.run(batch))

    def preprocess_batch(self, images: list[np.ndarray]) -> Batch:
        """First stage of :meth:`predict`: resize, normalise and pad the images into one batch."""
        pad_to = getattr(self.runner, "pad_to", None)
        if self.processing_device is not None and getattr(self.runner, "accepts_device_batch", False):
            from instseg_deploy.processing.device import preprocess_on_device

            return preprocess_on_device(images, self.params, self.processing_device, self.channel_order, pad_to)
        return preprocess(images, self.params, self.channel_order, pad_to=pad_to)

    def postprocess_batch(self, batch: Batch, raw: RawDetections) -> list[Instances]:
        """Last stage of :meth:`predict`: the runner's raw detections of ``batch`` to one
        :class:`Instances` per image, in original image coordinates."""
        on_device = self.processing_device is not None and raw.masks is None
        if on_device:
            from instseg_deploy.processing.device import masks_on_device
        results = []
        for i in range(len(batch.image_sizes)):
            sel = raw.batch_idx == i
            instances = postprocess(
                raw.boxes[sel], raw.scores[sel], raw.classes[sel], raw.mask_probs[sel],
                tuple(batch.image_sizes[i]), tuple(batch.original_sizes[i]),
                score_thresh=self.score_thresh, mask_format="none" if on_device else self.mask_format,
                pasted_masks=None if raw.masks is None else raw.masks[sel],
            )
            if on_device:
                instances.masks = masks_on_device(instances.mask_probs, instances.boxes, *instances.image_size,
                                                  self.mask_format, self.processing_device)
                instances.mask_format = self.mask_format
            results.append(instances)
        return results

    def __call__(self, image) -> Instances:
        return self.predict([image])[0]

    def as_array(self, image) -> np.ndarray:
        """An (H, W, 3) uint8 array in ``channel_order`` from an array, a PIL image or a path."""
        if isinstance(image, np.ndarray):
            return image
        if isinstance(image, (str, os.PathLike)):
            from instseg_deploy.image_io import read_image

            bgr = read_image(image)[0]  # as cv2.imread: BGR
            return bgr if self.channel_order == "BGR" else np.ascontiguousarray(bgr[:, :, ::-1])
        from PIL import Image

        if isinstance(image, Image.Image):
            rgb = np.asarray(image.convert("RGB"))
            return rgb if self.channel_order == "RGB" else np.ascontiguousarray(rgb[:, :, ::-1])
        raise TypeError(f"an image must be an (H, W, 3) uint8 numpy array, a PIL image or a file path, "
                        f"not {type(image).__name__}")

    def predict_stream(self, images: Iterable[np.ndarray], batch_size: int = 1) -> Iterator[Instances]:
        """Predict over an iterable in batches, yielding results in order."""
        chunk: list[np.ndarray] = []
        for image in images:
            chunk.append(image)
            if len(chunk) == batch_size:
                yield from self.predict(chunk)
                chunk = []
        if chunk:
            yield from self.predict(chunk)
