"""The demo's example model and validation set, shipped inside the package (wheel package data).

- ``shapes_r50/config.yaml``, ``shapes_r50/model_final.pkl``: a detectron2-trained thin R50-FPN
  Mask R-CNN (4 classes) as a full detectron2 config and model-zoo style weights; the weights file
  carries its class names (disc, square, triangle, ring), so predictions are labelled without a dataset.
- ``shapes_val/images/*.jpg``, ``shapes_val/annotations.json``: 100 generated images with COCO
  instance annotations, the set the demo and the parity tests evaluate on.

How they were made: tests/data/detectron2/README.md in the source repository.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DATA = Path(__file__).resolve().parent
