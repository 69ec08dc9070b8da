"""Reference for the multi-level RoIAlign op and random inputs for its tests.

The reference is the model's own pooler (detectron2 level assignment + torchvision.ops.roi_align),
always evaluated in float32; FP16 cases feed it the upcast FP16 inputs. It runs on the device of
the implementation under test: torchvision's CPU and CUDA kernels round sample coordinates
differently (nvcc contracts to FMA), by up to ~1.5e-5 on unit-variance maps.
"""

from __future__ import annotations

import numpy as np
import torch

from instseg_deploy.config.types import PoolerConfig
from instseg_deploy.modeling import poolers

STRIDES = [4, 8, 16, 32]


def reference_pool(rois: np.ndarray, features: list[np.ndarray], strides=STRIDES, output_size: int = 7,
                   sampling_ratio: int = 0, aligned: bool = True, canonical_box_size: int = 224,
                   canonical_level: int = 4, device: str = "cpu") -> np.ndarray:
    cfg = PoolerConfig(resolution=output_size, sampling_ratio=sampling_ratio, aligned=aligned,
                       canonical_box_size=canonical_box_size, canonical_level=canonical_level)
    feats = [torch.from_numpy(f.astype(np.float32)).to(device) for f in features]
    rois = torch.from_numpy(rois.astype(np.float32)).to(device)
    return poolers.multilevel_roi_align(feats, rois, list(strides), cfg).cpu().numpy()


def make_features(rng: np.random.Generator, batch: int, channels: int, height: int, width: int,
                  strides=STRIDES) -> list[np.ndarray]:
    """Feature maps of an (height, width) input, sized as an FPN with these strides makes them."""
    return [rng.standard_normal((batch, channels, -(-height // s), -(-width // s))).astype(np.float32)
            for s in strides]


def make_rois(rng: np.random.Generator, count: int, batch: int, height: int, width: int,
              min_size: float = 1.0, max_size: float = 600.0) -> np.ndarray:
    """Boxes of log-uniform size (so every FPN level is hit) centred anywhere in the image."""
    sizes = np.exp(rng.uniform(np.log(min_size), np.log(max_size), size=(count, 2)))
    centres = rng.uniform([0, 0], [width, height], size=(count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    batch_idx = rng.integers(0, batch, size=(count, 1))
    return np.concatenate([batch_idx, boxes], axis=1).astype(np.float32)
