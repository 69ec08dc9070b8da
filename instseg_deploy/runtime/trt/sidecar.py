"""The machine checks that refuse an engine this machine cannot run, before TensorRT sees it.

The sidecar's format (writing, reading) is ``model_file.sidecar``; this module compares a read
sidecar with the running TensorRT and GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from instseg_deploy.model_file.sidecar import DeviceInfo, EngineMismatch, file_sha256, sidecar_path
from instseg_deploy.runtime.trt.util import TensorRTUnavailable, version_triple


def current_device_info(index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device ``index`` (via torch), or why there is none."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA GPU: TensorRT needs an NVIDIA GPU with its driver "
                                  "(torch.cuda.is_available() is False; a CPU-only torch build also gives this)")
    if index >= torch.cuda.device_count():
        raise TensorRTUnavailable(f"CUDA device {index} does not exist ({torch.cuda.device_count()} visible)")
    major, minor = torch.cuda.get_device_capability(index)
    return DeviceInfo(torch.cuda.get_device_name(index), f"{major}.{minor}")


def check_sidecar(sidecar: dict[str, Any], engine: str | os.PathLike, tensorrt_version: str,
                  device: DeviceInfo) -> list[str]:
    """Refuse an engine this machine cannot run, with the reason and the rebuild command.

    Returns warnings for differences TensorRT tolerates (another GPU model of the same compute
    capability). Raises :class:`EngineMismatch` for another TensorRT version, another compute
    capability, or an engine file that is not the one the sidecar describes (its SHA-256).
    cpp/src/sidecar_check.cpp does the same checks in the same order for the C++ runtime.
    """
    engine = Path(engine)
    rebuild = f"rebuild it on this machine: instseg export --to trt --model <model.onnx> --out {engine}"
    built = sidecar["tensorrt_version"]
    if version_triple(built) != version_triple(tensorrt_version):
        raise EngineMismatch(f"{engine} was built with TensorRT {built} but this is TensorRT {tensorrt_version} "
                             f"(engines only run on the version that built them); {rebuild}")
    built_device = sidecar.get("device", {})
    if built_device.get("compute_capability") != device.compute_capability:
        raise EngineMismatch(f"{engine} was built for compute capability {built_device.get('compute_capability')} "
                             f"({built_device.get('name')}) but this GPU is {device.compute_capability} "
                             f"({device.name}); {rebuild}")
    expected = sidecar.get("engine_sha256")
    if expected and file_sha256(engine) != expected:
        raise EngineMismatch(f"{engine} is not the engine its sidecar {sidecar_path(engine).name} describes "
                             "(replaced or copied without it?); rebuild both with `instseg export --to trt`")
    warnings = []
    if built_device.get("name") != device.name:
        warnings.append(f"{engine} was built on {built_device.get('name')} and runs on {device.name} (same compute "
                        "capability, so TensorRT accepts it; rebuild here for the best kernels)")
    return warnings
