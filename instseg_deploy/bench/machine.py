"""The machine a benchmark ran on, as its report records it."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info(device: str = "cpu") -> dict:
    """CPU model, cores, Python/torch/onnxruntime versions and platform; the GPU and CUDA for a cuda ``device``."""
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    machine = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
               "onnxruntime": onnxruntime.__version__, "platform": platform.platform()}
    if device.startswith("cuda"):
        machine.update(gpu=torch.cuda.get_device_name(torch.device(device)), cuda=torch.version.cuda)
    return machine
