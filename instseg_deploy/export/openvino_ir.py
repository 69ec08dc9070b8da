"""`instseg export --to openvino`: an exported ONNX model to OpenVINO IR (``.xml`` + ``.bin``).

The IR keeps the weights in f32 (OpenVINO's ``save_model`` would compress them to f16 by
default) and carries the ONNX file's instseg metadata in its ``rt_info`` under the same key, so
every command reads the IR as it reads the ``.onnx``. The inference precision (f32 or bf16) is
chosen when the IR is compiled, not here. An INT8 Q/DQ file is converted in the Q/DQ layout
OpenVINO fuses (``runtime.openvino_qdq``), as ``--backend openvino`` reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.metadata import METADATA_KEY
from instseg_deploy.model_file.reader import IR_SUFFIX
from instseg_deploy.runtime.openvino import openvino_model_file, read_openvino_model, shared_core, write_openvino_model


@dataclass(frozen=True)
class IrExportReport:
    xml: Path
    bin: Path
    nodes: int
    size_bytes: int  # .xml + .bin


def export_openvino_ir(onnx_path: str | os.PathLike, out: str | os.PathLike) -> IrExportReport:
    """Convert ``onnx_path`` (an instseg ONNX export with standard ops) to ``out`` (.xml) + its .bin.

    Both files are written next to ``out`` under temporary names and renamed when complete, the
    .bin first: an .xml at ``out`` always has its weights.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if out.suffix.lower() != IR_SUFFIX:
        raise InstsegError(f"--out {out} must be the IR's .xml (its weights go to {out.with_suffix('.bin').name})")
    source = openvino_model_file(onnx_path, needs_metadata=False)
    if source.format != "onnx":
        raise InstsegError(f"{onnx_path} is not an ONNX model; --to openvino converts an `instseg export` .onnx")
    meta = source.require_metadata("export it with `instseg export --to onnx` first")
    model = read_openvino_model(shared_core(), onnx_path, source.graph)
    model.set_rt_info(json.dumps(meta), [METADATA_KEY])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        staged = Path(tmp) / f"{out.stem}.xml"
        write_openvino_model(model, staged, destination=out)
        os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staged, out)
    weights = out.with_suffix(".bin")
    return IrExportReport(out, weights, len(model.get_ops()), out.stat().st_size + weights.stat().st_size)
