"""The machine a benchmark ran on, as its report records it."""

from __future__ import annotations

import os
import platform

from instseg_deploy.cpu_isa import cpu_isa


def machine_info(device: str = "cpu") -> dict:
    """CPU model and ISA, cores, Python/torch/onnxruntime(/openvino) versions and platform; the GPU and CUDA
    for a cuda ``device``."""
    import onnxruntime
    import torch

    isa = cpu_isa()
    machine = {"cpu": isa.model, "isa": isa.summary, "isa_features": list(isa.features or ()),
               "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
               "onnxruntime": onnxruntime.__version__, "platform": platform.platform()}
    try:
        import openvino

        from instseg_deploy.runtime.openvino import openvino_version

        machine["openvino"] = openvino_version(openvino)
    except ImportError:
        pass
    if device.startswith("cuda"):
        machine.update(gpu=torch.cuda.get_device_name(torch.device(device)), cuda=torch.version.cuda)
    return machine


def cpu_line(machine: dict) -> str:
    """"CPU: <model> (<ISA summary>)" for a report's header; results written before the ISA was recorded
    give the model alone."""
    isa = machine.get("isa")
    return f"CPU: {machine.get('cpu', 'unknown')}" + (f" ({isa})" if isa else "")
