"""The JSON sidecar next to a TensorRT engine, and the checks that refuse a mismatched engine.

A serialized engine only runs on the TensorRT version that built it and on GPUs of the same
compute capability; deserialising it elsewhere fails deep inside TensorRT (or worse). So
``model.engine`` gets ``model.engine.json`` with the model's metadata (classes, preprocessing,
thresholds), the TensorRT version, GPU name and compute capability, precision, optimisation
profiles and the plugin library, and a loader compares it with the running machine *before*
deserialising.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy import __version__
from instseg_deploy.atomic import write_json
from instseg_deploy.errors import InstsegError

SIDECAR_FORMAT = 1
TRT_INSTALL = "pip install \"tensorrt-cu12>=10,<11\" (TensorRT 10 for CUDA 12; tensorrt-cu13 for CUDA 13)"


class TensorRTUnavailable(InstsegError):
    """TensorRT or a CUDA GPU is missing on this machine."""


class EngineMismatch(InstsegError):
    """The engine was built for another TensorRT version or GPU, or does not match its sidecar."""


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "major.minor", e.g. "9.0"


def import_tensorrt():
    """The ``tensorrt`` module, or one line saying it is missing and how to install it."""
    try:
        import tensorrt
    except ImportError as e:
        detail = "" if e.name == "tensorrt" else f" ({e})"  # installed but broken, e.g. missing libnvinfer
        raise TensorRTUnavailable(f"TensorRT is not installed{detail}: {TRT_INSTALL}") from None
    return tensorrt


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


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_sidecar(meta: dict[str, Any], *, engine_sha256: str, tensorrt_version: str, device: DeviceInfo,
                  precision: str, builder_flags: list[str], int8_mode: str | None,
                  profiles: dict[str, dict[str, list[int]]], plugin_library: str | None, plugin_required: bool,
                  source_onnx: str, workspace_bytes: int | None) -> dict[str, Any]:
    """The sidecar document. ``meta``: the ONNX model's instseg metadata, stored with the engine's
    precision so that readers of ``metadata["precision"]`` see what the engine actually runs."""
    return {
        "format_version": SIDECAR_FORMAT,
        "producer": f"instseg-deploy {__version__}",
        "engine_sha256": engine_sha256,
        "tensorrt_version": tensorrt_version,
        "device": {"name": device.name, "compute_capability": device.compute_capability},
        "precision": precision,
        "builder_flags": list(builder_flags),
        "int8_mode": int8_mode,
        "profiles": profiles,
        "plugin_library": {"required": plugin_required, "path": plugin_library},
        "source_onnx": source_onnx,
        "workspace_bytes": workspace_bytes,
        "metadata": {**meta, "precision": precision},
    }


def write_sidecar(engine: str | os.PathLike, sidecar: dict[str, Any]) -> Path:
    path = sidecar_path(engine)
    write_json(path, sidecar)
    return path


def read_sidecar(engine: str | os.PathLike) -> dict[str, Any]:
    """The engine's sidecar, with one-line errors for a missing engine, sidecar or bad JSON."""
    engine = Path(engine)
    if not engine.is_file():
        raise InstsegError(f"engine file not found: {engine}")
    path = sidecar_path(engine)
    if not path.is_file():
        raise EngineMismatch(f"{path.name} is missing next to {engine}: TensorRT engines need the sidecar written by "
                             "`instseg export --to trt` (rebuild the engine with it)")
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EngineMismatch(f"{path} is not valid JSON; rebuild the engine with `instseg export --to trt`") from None
    if not isinstance(sidecar, dict) or "metadata" not in sidecar or "tensorrt_version" not in sidecar:
        raise EngineMismatch(f"{path} is not an instseg engine sidecar; rebuild the engine with "
                             "`instseg export --to trt`")
    if int(sidecar.get("format_version", 0)) > SIDECAR_FORMAT:
        raise EngineMismatch(f"{path} was written by a newer instseg-deploy (sidecar format "
                             f"{sidecar['format_version']}); upgrade to read it")
    return sidecar


def version_triple(version: str) -> tuple[int, ...]:
    """'10.3.0.26' or '10.3.0.post1' -> (10, 3, 0): engines are tied to major.minor.patch."""
    return tuple(int(v) for v in re.findall(r"\d+", version)[:3])


def check_sidecar(sidecar: dict[str, Any], engine: str | os.PathLike, tensorrt_version: str,
                  device: DeviceInfo) -> list[str]:
    """Refuse an engine this machine cannot run, with the reason and the rebuild command.

    Returns warnings for differences TensorRT tolerates (another GPU model of the same compute
    capability). Raises :class:`EngineMismatch` for another TensorRT version, another compute
    capability, or an engine file that is not the one the sidecar describes.
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
