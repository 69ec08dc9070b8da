"""Reading the FP32 source model and writing a converted one that keeps our metadata.

A quantized or FP16 model is a first-class exported model: it carries every metadata entry
of its source, with ``precision`` set in the instseg JSON (plus how it was made), so the ORT
backend, ``instseg eval`` and ``instseg bench`` need nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from instseg_deploy.atomic import atomic_path
from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.metadata import METADATA_KEY, parse_metadata
from instseg_deploy.model_file.reader import read_onnx_metadata
from instseg_deploy.ops.roi_align_contract import uses_plugin
from instseg_deploy.quantize.stages import has_stage_names


def read_source_model(path: str | os.PathLike, action: str) -> tuple[Any, dict[str, str], dict[str, Any]]:
    """(ModelProto with weights, metadata_props, parsed instseg metadata) of an FP32 export whose node
    names carry the export's stage scopes (the precision placement relies on them); ``action`` ends
    the refusal message ("quantize it")."""
    import onnx

    props, graph = read_onnx_metadata(path)  # clear errors for missing or unreadable files; no weights yet
    meta = parse_metadata(props, str(path))
    precision = meta.get("precision", "fp32")
    if precision != "fp32":
        raise InstsegError(f"{path} is already {precision}: convert the FP32 export instead")
    if uses_plugin(graph):
        raise InstsegError(f"{path} uses the RoIAlign plugin node (--roi-align plugin); quantize the "
                           "standard-ops export (--roi-align onnx) instead")
    proto = onnx.load(str(path))
    if not has_stage_names(proto.graph.node):
        raise InstsegError(f"{path} does not have the node names `instseg export` writes; "
                           f"re-export it with this version to {action}")
    return proto, props, meta


def write_converted(proto, out: str | os.PathLike, source_props: dict[str, str], meta: dict[str, Any],
                    precision: str, details: dict[str, Any]) -> Path:
    """Copy the source's metadata_props onto ``proto`` (precision and details added) and save atomically."""
    import onnx

    meta = {**meta, "precision": precision, precision: details}
    del proto.metadata_props[:]
    for key, value in source_props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, (json.dumps(meta) if key == METADATA_KEY else value)
    proto.producer_name = "instseg-deploy"
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out
