"""Will TensorRT's ONNX parser take this graph? A static check against onnx-tensorrt's operator table.

Every node (subgraphs included) is looked up in ``onnx_tensorrt_ops/<major>.json``: ops of the
default domain must be listed as supported, and the type of the op's data input must be one the
table lists for it. Our RoIAlign plugin node (``roi_align_contract``) is supported (TensorRT finds
the plugin by ``op_type``); any other custom domain is not. The restrictions column (attributes,
"must be an initializer", ...) is not checked: it is printed only when a node fails for another reason.

Types come from the graph itself, read without weights: graph inputs, initializers, ``value_info``
and ``Constant`` nodes, then ``onnx.shape_inference`` on that weightless graph (it still knows each
initializer's type and dims), with our plugin node's outputs typed like its features input so
inference continues past it. Where inference fails, the declared types are used alone; a node whose
data input still has no known type is checked by op only and counted as ``untyped``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.onnx_edit import ONNX_DOMAINS, all_nodes, declared_types
from instseg_deploy.ops.roi_align_contract import (
    NAMESPACE_ATTRIBUTE,
    ONNX_DOMAIN,
    OP_TYPE,
    ORT_DOMAIN,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    VERSION_ATTRIBUTE,
)
from instseg_deploy.runtime.trt.util import SUPPORTED_MAJORS

TABLES = Path(__file__).parent / "onnx_tensorrt_ops"
TRT_MAJORS = SUPPORTED_MAJORS  # a table per TensorRT major this package follows
PLUGIN_DOMAINS = (ONNX_DOMAIN, ORT_DOMAIN)  # the exported node and its ONNX Runtime adaptation
# ONNX TensorProto.DataType names -> the names operators.md uses. DOUBLE is FP32 here: the parser
# casts it down ("limited support", the table's note). Anything else is not a TensorRT type.
TABLE_TYPES = {"FLOAT": "FP32", "DOUBLE": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "INT32": "INT32",
               "INT64": "INT64", "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "INT4": "INT4",
               "FLOAT8E4M3FN": "FP8", "FLOAT4E2M1": "FP4"}
# Which input carries the type the table lists (input 0 otherwise): Where's input 0 is its condition.
DATA_INPUT = {"Where": 1}
# Ops whose listed type is their output's (their inputs are shapes or scalars).
OUTPUT_TYPED = ("ConstantOfShape", "Constant", "RandomNormal", "RandomUniform")


@dataclass(frozen=True)
class Problem:
    node: str  # the node's name ("" for the graph as a whole)
    op: str  # domain::op_type for custom domains, op_type otherwise
    reason: str


@dataclass
class ParsabilityReport:
    trt_major: int
    table: dict[str, Any]  # the JSON's provenance (source, revision, read_on, note, release_changes)
    nodes_checked: int = 0
    untyped: int = 0  # nodes checked by op only: their data input's type is unknown
    op_counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)


@cache
def load_table(trt_major: int) -> dict[str, Any]:
    """The operator table for a TensorRT major version, as refresh.py wrote it."""
    path = TABLES / f"{trt_major}.json"
    if trt_major not in TRT_MAJORS or not path.is_file():
        raise InstsegError(f"no onnx-tensorrt operator table for TensorRT {trt_major} "
                           f"(have: {', '.join(map(str, TRT_MAJORS))})")
    return json.loads(path.read_text(encoding="utf-8"))


def tensor_types(proto) -> dict[str, int]:
    """Tensor name -> ONNX elem type, as far as the weightless graph tells (see the module doc)."""
    import onnx

    types: dict[str, int] = {}
    declared_types(proto.graph, types)
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for _ in range(2):  # the second pass continues past our plugin nodes, typed from the first
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # noqa: BLE001 - inference is a best effort; the declared types remain
            return types
        declared_types(inferred.graph, types)
        plugin_outputs = [(n, out) for n in all_nodes(model.graph) if n.op_type == OP_TYPE
                          for out in n.output if out not in types and n.input and n.input[0] in types]
        if not plugin_outputs:
            break
        for node, out in plugin_outputs:
            types[out] = types[node.input[0]]
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(out, types[out], None))
    return types


def _type_name(elem_type: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(elem_type)


def _attr(node, name: str):
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return None


def _check_plugin(node) -> str | None:
    version = _attr(node, VERSION_ATTRIBUTE)
    namespace = _attr(node, NAMESPACE_ATTRIBUTE)
    version = version.decode() if isinstance(version, bytes) else version
    namespace = namespace.decode() if isinstance(namespace, bytes) else namespace
    if version not in (None, PLUGIN_VERSION) or namespace not in (None, PLUGIN_NAMESPACE):
        return (f"plugin {OP_TYPE} version {version!r} namespace {namespace!r}: our plugin library registers "
                f"version {PLUGIN_VERSION!r} namespace {PLUGIN_NAMESPACE!r}")
    return None


def _check_node(node, row: dict[str, Any] | None, types: dict[str, int], trt_major: int) -> tuple[str | None, bool]:
    """(why TensorRT would not parse it, or None; whether its data type was known)."""
    if row is None:
        return f"{node.op_type} is not in onnx-tensorrt's operator table for TensorRT {trt_major}", True
    if not row["supported"]:
        return "unsupported op (onnx-tensorrt table: N" + (f"; {row['notes']}" if row["notes"] else "") + ")", True
    if node.op_type in OUTPUT_TYPED:
        tensor = node.output[0] if node.output else ""
    else:
        index = DATA_INPUT.get(node.op_type, 0)
        tensor = node.input[index] if len(node.input) > index else ""
    if tensor not in types:
        return None, False
    onnx_type = _type_name(types[tensor])
    table_type = TABLE_TYPES.get(onnx_type)
    if table_type is None:
        return f"data type {onnx_type} of {tensor!r} is not a TensorRT type", True
    if table_type not in row["types"]:
        reason = (f"unsupported input data type {onnx_type} ({tensor!r}) for {node.op_type}: "
                  f"the table lists {', '.join(row['types']) or 'none'}")
        return reason + (f" (restrictions: {row['notes']})" if row["notes"] else ""), True
    return None, True


def check(model: str | os.PathLike | Any, trt_major: int) -> ParsabilityReport:
    """Check every node of ``model`` (a path, or an onnx ModelProto) against the TensorRT ``trt_major`` table."""
    from instseg_deploy.model_file.reader import read_onnx_metadata

    table = load_table(trt_major)
    proto = model if hasattr(model, "graph") else read_onnx_metadata(model)[1]
    report = ParsabilityReport(trt_major, {k: table[k] for k in ("source", "revision", "read_on", "note")})
    report.table["release_changes"] = [c["release"] for c in table.get("release_changes", [])]
    low, high = table["opset"]
    for opset in proto.opset_import:
        if opset.domain in ONNX_DOMAINS and not low <= opset.version <= high:
            report.problems.append(Problem("", "", f"ONNX opset {opset.version} is outside the {low}..{high} the "
                                                   f"TensorRT {trt_major} table covers"))
    types = tensor_types(proto)
    for index, node in enumerate(all_nodes(proto.graph)):
        name = node.name or f"#{index}"
        report.nodes_checked += 1
        if node.domain in ONNX_DOMAINS:
            report.op_counts[node.op_type] += 1
            reason, typed = _check_node(node, table["ops"].get(node.op_type), types, trt_major)
            report.untyped += not typed
        elif node.op_type == OP_TYPE and node.domain in PLUGIN_DOMAINS:
            report.op_counts[f"{node.domain}::{node.op_type}"] += 1
            reason = _check_plugin(node)
        else:
            report.op_counts[f"{node.domain}::{node.op_type}"] += 1
            reason = (f"custom domain {node.domain!r}: not an ONNX op TensorRT imports, and not our "
                      f"{OP_TYPE} plugin (it parses only if a TensorRT plugin named {node.op_type!r} is registered)")
        if reason is not None:
            op = node.op_type if node.domain in ONNX_DOMAINS else f"{node.domain}::{node.op_type}"
            report.problems.append(Problem(name, op, reason))
    return report


def check_graph(model: str | os.PathLike | Any, trt_major: int) -> list[Problem]:
    """The nodes of ``model`` that TensorRT ``trt_major``'s ONNX parser would not take, with why."""
    return check(model, trt_major).problems
