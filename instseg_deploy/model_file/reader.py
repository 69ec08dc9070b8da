"""Reading what an exported model file says about itself, for ``.onnx``, OpenVINO IR and ``.engine`` alike.

An ONNX export carries its instseg metadata in ``metadata_props`` (read without loading the
weights); an OpenVINO IR in the ``.xml``'s ``rt_info`` (read as XML, without OpenVINO); a TensorRT
engine cannot, so its metadata is in the JSON sidecar beside it. Code that
only needs the metadata (class names, preprocessing, precision, the source config) calls
:func:`read_model_file` and needs neither ONNX Runtime nor TensorRT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.metadata import METADATA_KEY, parse_metadata
from instseg_deploy.model_file.sidecar import read_sidecar, sidecar_path

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # TensorRT's usual names for serialized engines
IR_SUFFIX = ".xml"  # an OpenVINO IR: model.xml (graph, rt_info) + model.bin (weights)


@dataclass(frozen=True)
class ModelFile:
    """An exported model's self-description.

    ``metadata`` is None only for an ONNX file without instseg metadata (exported by another
    tool); ``graph`` is the ONNX ModelProto with its inline weights but no external data (None
    for engines); ``sidecar`` is the engine's whole sidecar (None for ONNX).
    """

    path: Path
    format: str  # "onnx", "openvino" or "engine"
    metadata: dict[str, Any] | None
    graph: Any = None
    sidecar: dict[str, Any] | None = None

    @property
    def precision(self) -> str:
        return (self.metadata or {}).get("precision", "fp32")

    def require_metadata(self, hint: str = "pass --config to supply preprocessing and class names") -> dict[str, Any]:
        """The metadata, or a clear error naming the file and what to do instead."""
        if self.metadata is None:
            raise InstsegError(f"{self.path} has no instseg metadata (not exported by `instseg export`); {hint}")
        return self.metadata


def is_engine_file(path: str | os.PathLike) -> bool:
    """A TensorRT engine by its name, or by the sidecar beside it."""
    path = Path(path)
    return path.suffix.lower() in ENGINE_SUFFIXES or sidecar_path(path).is_file()


def read_onnx_metadata(path: str | os.PathLike) -> tuple[dict[str, str], Any]:
    """(metadata_props, ModelProto without weights) with clear errors for missing/broken files."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise InstsegError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise InstsegError(f"{path} is not a readable ONNX model "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not proto.graph.node:
        raise InstsegError(f"{path} is not a readable ONNX model (no graph)")
    return {p.key: p.value for p in proto.metadata_props}, proto


def read_ir_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``rt_info`` entries of an OpenVINO IR ``.xml`` as {key: value} (our metadata is one of them)."""
    from xml.etree import ElementTree

    path = Path(path)
    if not path.is_file():
        raise InstsegError(f"model file not found: {path}")
    if not path.with_suffix(".bin").is_file():
        raise InstsegError(f"{path.with_suffix('.bin')} is missing: an OpenVINO IR is the .xml and its .bin")
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as e:
        raise InstsegError(f"{path} is not a readable OpenVINO IR ({e})") from None
    if root.tag != "net":
        raise InstsegError(f"{path} is not an OpenVINO IR (its root element is <{root.tag}>, not <net>)")
    rt_info = root.find("rt_info")
    entries = [] if rt_info is None else list(rt_info)
    return {entry.tag: entry.get("value", "") for entry in entries if entry.get("value") is not None}


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """The metadata of an ``.onnx`` export, an OpenVINO IR or an engine (from its sidecar).

    Raises :class:`InstsegError` for a missing file, an unreadable ONNX model or IR, invalid
    metadata, or an engine whose sidecar is missing or broken (``EngineMismatch``).
    """
    path = Path(path)
    if is_engine_file(path):
        sidecar = read_sidecar(path)
        return ModelFile(path, "engine", sidecar["metadata"], sidecar=sidecar)
    if path.suffix.lower() == IR_SUFFIX:
        props = read_ir_metadata(path)
        meta = parse_metadata(props, str(path)) if METADATA_KEY in props else None
        return ModelFile(path, "openvino", meta)
    props, proto = read_onnx_metadata(path)
    meta = parse_metadata(props, str(path)) if METADATA_KEY in props else None
    return ModelFile(path, "onnx", meta, graph=proto)


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The instseg metadata of an ``.onnx``, ``.xml`` (IR) or ``.engine`` file; an error when it has none."""
    return read_model_file(path).require_metadata()
