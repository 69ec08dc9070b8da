"""FP16 conversion of an exported detector: the network stages in half precision, the rest FP32.

Converted: every node of the backbone, FPN, RPN head, box head and mask head (weights stored
as FP16). Kept FP32 (Cast nodes at the boundaries): input normalisation, anchor/box decoding,
top-k, NMS and its inputs, RoIAlign and its rois, mask pasting, the sensitive prediction
layers (``stages.SENSITIVE_LAYERS``), and any node of our ``instseg`` plugin domain. The
model's inputs and outputs keep their FP32/INT64 types, so every runner feeds it unchanged.

ONNX Runtime's CPU provider has few FP16 kernels: it runs such a model correctly (it casts
around nodes it cannot run in FP16) but slowly -- FP16 is for GPUs and TensorRT; on the CPU
this measures its accuracy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from instseg_deploy.model_file.onnx_edit import declared_types, prune_dead_nodes
from instseg_deploy.ops.roi_align_contract import OP_TYPE
from instseg_deploy.quantize.model_io import read_source_model, write_converted
from instseg_deploy.quantize.stages import (
    SENSITIVE_LAYERS,
    compile_patterns,
    stage_of,
)


@dataclass
class Fp16Report:
    path: Path
    fp16_nodes: int
    fp32_nodes: int
    seconds: float


def fp32_node_names(nodes, extra_patterns: tuple[str, ...] = ()) -> list[str]:
    """Nodes that must stay FP32: outside the network stages, sensitive, plugin, or matching a pattern."""
    patterns = compile_patterns(list(SENSITIVE_LAYERS) + list(extra_patterns))
    return [n.name for n in nodes if n.op_type == OP_TYPE or stage_of(n.name) is None
            or any(p.search(n.name) for p in patterns)]


def convert_fp16(model: str | os.PathLike, out: str | os.PathLike, exclude: tuple[str, ...] = ()) -> Fp16Report:
    """Write an FP16 copy of the FP32 export ``model`` with the source's metadata (precision fp16)."""
    from onnxruntime.transformers.float16 import (
        DEFAULT_OP_BLOCK_LIST,
        convert_float_to_float16,
    )

    start = time.perf_counter()
    proto, props, meta = read_source_model(model, "convert it")
    nodes = proto.graph.node
    keep = fp32_node_names(nodes, exclude)
    total = len(nodes)
    converted = convert_float_to_float16(proto, keep_io_types=True, node_block_list=keep,
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST))
    dropped = drop_round_trip_casts(converted)
    details = {"tool": "onnxruntime.transformers.float16", "kept_fp32": len(keep), "round_trip_casts_dropped": dropped}
    path = write_converted(converted, out, props, meta, "fp16", details)
    return Fp16Report(path, total - len(keep), len(keep), time.perf_counter() - start)


def drop_round_trip_casts(proto) -> int:
    """Remove FP32 -> FP16 -> FP32 Cast pairs, in place; how many were bypassed.

    The converter casts every tensor between two kept-FP32 nodes down and up again, so FP32 islands
    (box decoding, NMS inputs, RoIAlign coordinates) would still see FP16-rounded values, and a strongly
    typed TensorRT build keeps that rounding. The FP32 consumer reads the FP32 source instead.
    """
    import onnx
    from onnx import TensorProto

    graph = proto.graph
    types = declared_types(onnx.shape_inference.infer_shapes(proto).graph)
    producer = {out: node for node in graph.node for out in node.output}
    bypassed = 0
    for node in graph.node:
        up = producer.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (up is not None and up.op_type == "Cast" and _cast_to(node) == TensorProto.FLOAT
                and _cast_to(up) == TensorProto.FLOAT16 and types.get(up.input[0]) == TensorProto.FLOAT):
            # The up-cast becomes an Identity of the FP32 source: its output name (maybe a graph output) stays.
            node.op_type, node.input[0] = "Identity", up.input[0]
            del node.attribute[:]
            bypassed += 1
    prune_dead_nodes(graph)
    return bypassed


def _cast_to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)
