"""One inference API over every backend: image -> preprocess -> runner -> postprocess -> Instances."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from instseg_deploy.processing.postprocess import postprocess
from instseg_deploy.processing.preprocess import Batch, PreprocessParams, preprocess
from instseg_deploy.runtime.runner import RawDetections, Runner
from instseg_deploy.structures import Instances


class Predictor:
    """Runs a model on uint8 images and returns one :class:`Instances` per image.

    Images are (H, W, 3) uint8 arrays in ``channel_order``: "BGR" by default, which is what
    ``cv2.imread`` and detectron2's DefaultPredictor use; pass "RGB" for PIL/imageio arrays.
    The model's own channel order (INPUT.FORMAT) is handled internally.
    """

    def __init__(self, runner: Runner, params: PreprocessParams, class_names: tuple[str, ...],
                 score_thresh: float = 0.0, channel_order: str = "BGR", paste_masks: bool = True):
        if channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {channel_order!r}")
        self.runner = runner
        self.params = params
        self.class_names = class_names
        self.score_thresh = score_thresh
        self.channel_order = channel_order
        self.paste_masks = paste_masks

    def predict(self, images: list[np.ndarray]) -> list[Instances]:
        """Run the images as one batch (in chunks when the model has a fixed batch size)."""
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
        return preprocess(images, self.params, self.channel_order, pad_to=getattr(self.runner, "pad_to", None))

    def postprocess_batch(self, batch: Batch, raw: RawDetections) -> list[Instances]:
        """Last stage of :meth:`predict`: the runner's raw detections of ``batch`` to one
        :class:`Instances` per image, in original image coordinates."""
        results = []
        for i in range(len(batch.image_sizes)):
            sel = raw.batch_idx == i
            results.append(postprocess(
                raw.boxes[sel], raw.scores[sel], raw.classes[sel], raw.mask_probs[sel],
                tuple(batch.image_sizes[i]), tuple(batch.original_sizes[i]),
                score_thresh=self.score_thresh, paste=self.paste_masks,
                pasted_masks=None if raw.masks is None else raw.masks[sel],
            ))
        return results

    def __call__(self, image: np.ndarray) -> Instances:
        return self.predict([image])[0]

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
