"""PyTorch eager backend: our MaskRCNN module with weights from any supported checkpoint."""

from __future__ import annotations

import torch

from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.preprocess import Batch
from instseg_deploy.runtime.runner import RawDetections


class TorchRunner:
    name = "torch"
    max_batch = None
    pad_to = None

    def __init__(self, model: MaskRCNN, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def run(self, batch: Batch) -> RawDetections:
        images = torch.from_numpy(batch.images).to(self.device)
        sizes = torch.from_numpy(batch.image_sizes).to(self.device)
        with torch.inference_mode():
            boxes, scores, classes, batch_idx, mask_probs = self.model(images, sizes)
        return RawDetections(*(t.cpu().numpy() for t in (boxes, scores, classes, batch_idx, mask_probs)))
