"""What a backend must provide: run one preprocessed batch, return flat raw detections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from instseg_deploy.processing.graph_io import PASTED_MASKS, RAW_OUTPUTS
from instseg_deploy.processing.preprocess import Batch


@dataclass
class RawDetections:
    """Model outputs for a batch, in network-input pixels (see ``MaskRCNN.forward``).

    boxes (D, 4) float32, scores (D,) float32, classes (D,) int64, batch_idx (D,) int64,
    mask_probs (D, 28, 28) float32; masks (D, H, W) bool when the graph pasted them (each image's
    masks in the top-left corner of the canvas), else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    batch_idx: np.ndarray
    mask_probs: np.ndarray
    masks: np.ndarray | None = None

    @classmethod
    def from_graph_outputs(cls, outputs: Mapping[str, np.ndarray], num_images: int) -> RawDetections:
        """An exported graph's named outputs (ORT, OpenVINO, TensorRT alike) for a batch whose first
        ``num_images`` slots are real: detections of filler slots (batch_idx >= num_images) dropped."""
        boxes, scores, classes, batch_idx, mask_probs = (outputs[name] for name in RAW_OUTPUTS)
        keep = batch_idx < num_images
        masks = outputs.get(PASTED_MASKS)
        return cls(boxes[keep], scores[keep], classes[keep].astype(np.int64), batch_idx[keep].astype(np.int64),
                   mask_probs[keep], masks=None if masks is None else masks[keep])


def fixed_input_shape(meta: Mapping[str, Any]) -> tuple[int | None, tuple[int, int] | None]:
    """(max batch, padded (H, W)) of an exported graph from its metadata; None where it is dynamic."""
    batch, size = meta.get("batch", "dynamic"), meta.get("size", "dynamic")
    return (batch if isinstance(batch, int) else None), (tuple(size) if isinstance(size, list) else None)


class Runner(Protocol):
    """A loaded model on one backend (torch, ort, openvino, trt)."""

    name: str
    max_batch: int | None  # a fixed-batch model takes at most this many images per run
    pad_to: tuple[int, int] | None  # a fixed-size model needs its input padded to this (H, W)

    def run(self, batch: Batch) -> RawDetections: ...
