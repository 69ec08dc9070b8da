"""The JSON sidecar next to a TensorRT engine: its format, writing and reading (no TensorRT needed).

A serialized engine only runs on the TensorRT version that built it and on GPUs of the same
compute capability, and it cannot describe itself. So ``model.engine`` gets ``model.engine.json``
with the model's metadata (classes, preprocessing, thresholds), the TensorRT version, GPU name and
compute capability, precision, optimisation profiles, the plugin library (path and SHA-256, so that
a copy next to the engine can be verified) and the engine's SHA-256. The loaders
(``runtime.trt.sidecar.check_sidecar``, cpp/src/sidecar_check.cpp) compare it with the running
machine before deserialising.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy import __version__
from instseg_deploy.atomic import write_json
from instseg_deploy.errors import InstsegError

SIDECAR_FORMAT = 1
SIDECAR_SUFFIX = ".json"  # model.engine -> model.engine.json


class EngineMismatch(InstsegError):
    """The engine was built for another TensorRT version or GPU, or does not match its sidecar."""


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine was built for (in the sidecar) or runs on."""

    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "major.minor", e.g. "9.0"


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (engines are hundreds of MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_sidecar(meta: dict[str, Any], *, engine_sha256: str, tensorrt_version: str, device: DeviceInfo,
                  precision: str, builder_flags: list[str], int8_mode: str | None,
                  profiles: dict[str, dict[str, list[int]]], plugin_library: str | None, plugin_required: bool,
                  source_onnx: str, workspace_bytes: int | None, plugin_sha256: str | None = None) -> dict[str, Any]:
    """The sidecar document. ``meta``: the ONNX model's instseg metadata, stored with the engine's
    precision so that readers of ``metadata["precision"]`` see what the engine actually runs.
    ``plugin_sha256``: the plugin library's :func:`file_sha256`; the loaders accept a library copied
    next to the engine only when it matches (``runtime.trt.plugin_library``)."""
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
        "plugin_library": {"required": plugin_required, "path": plugin_library, "sha256": plugin_sha256},
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
