"""PyTorch eager backend: our MaskRCNN module with weights from any supported checkpoint."""

from __future__ import annotations

import torch

from instseg_deploy.errors import InstsegError
from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.preprocess import Batch
from instseg_deploy.runtime.runner import RawDetections


def torch_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device; one clear error for a name torch does not know or a GPU it cannot see."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InstsegError(f"--device {device}: not a torch device ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InstsegError(f"--device {device}: torch sees no CUDA GPU here (`instseg doctor` says why)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InstsegError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


class TorchRunner:
    name = "torch"
    max_batch = None
    pad_to = None
    accepts_device_batch = True  # Batch.images may already be a tensor on the model's device

    def __init__(self, model: MaskRCNN, device: str | torch.device = "cpu"):
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()

    def run(self, batch: Batch) -> RawDetections:
        images = batch.images if torch.is_tensor(batch.images) else torch.from_numpy(batch.images)
        images = images.to(self.device)
        sizes = torch.from_numpy(batch.image_sizes).to(self.device)
        with torch.inference_mode():
            boxes, scores, classes, batch_idx, mask_probs = self.model(images, sizes)
        return RawDetections(*(t.cpu().numpy() for t in (boxes, scores, classes, batch_idx, mask_probs)))
