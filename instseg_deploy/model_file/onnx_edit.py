"""Small ONNX graph reads and in-place edits shared by the passes that rewrite or check graphs.

``quantize.qdq_layout`` writes the Q/DQ layout ONNX Runtime fuses and ``runtime.openvino_qdq`` the one
OpenVINO fuses (consumers, moved inputs, dead Q/DQ nodes, topological order); ``quantize.fp16`` drops
cast round trips; ``export.trt.parsability`` walks every node and tensor type, subgraphs included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

ONNX_DOMAINS = ("", "ai.onnx")  # the names of the standard operator domain
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Layers a backend can run on integers when their input and weights come through Q/DQ (OpenVINO and
# TensorRT all four; ONNX Runtime's CPU provider has no integer ConvTranspose).
INTEGER_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Two float32 scales at most this many ulps apart are one quantizer written more than once:
# quantize.qdq_layout nudges its k-th copy of a pair by k ulps, and never makes more copies than this.
SAME_SCALE_ULPS = 64


def consumers_of(graph) -> dict[str, list]:
    """Tensor name -> the nodes that read it, in graph order."""
    found: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def replace_input(node, old: str, new: str) -> None:
    """Every input of ``node`` named ``old`` reads ``new`` instead."""
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new


def prune_dead_nodes(graph, op_types: Iterable[str] | None = None) -> None:
    """Drop nodes (of ``op_types``, or of any type) whose outputs nothing reads any more, repeatedly."""
    op_types = None if op_types is None else set(op_types)
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if (op_types is None or n.op_type in op_types)
                and not any(o in used for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def prune_dead_qdq(graph) -> None:
    """Drop Q/DQ nodes whose outputs nothing reads any more."""
    prune_dead_nodes(graph, QDQ_OPS)


def subgraphs(node) -> Iterator:
    """The graphs in ``node``'s attributes (If branches, Loop and Scan bodies)."""
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def all_nodes(graph) -> Iterator:
    """Every node of ``graph`` and of its subgraphs, depth first."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from all_nodes(sub)


def declared_types(graph, types: dict[str, int] | None = None) -> dict[str, int]:
    """Tensor name -> ONNX element type, as declared (inputs, outputs, value_info), by initializers
    and by Constant nodes, subgraphs included; added to ``types`` where it has no entry yet."""
    import onnx

    types = {} if types is None else types
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types.setdefault(vi.name, vi.type.tensor_type.elem_type)
    for init in graph.initializer:
        types.setdefault(init.name, init.data_type)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ONNX_DOMAINS:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    types.setdefault(node.output[0], attr.t.data_type)
        for sub in subgraphs(node):
            declared_types(sub, types)
    return types


def sort_topologically(graph) -> None:
    """Put every node after the producers of its inputs (ONNX requires it; edits may break it)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producer_of = {out: i for i, node in enumerate(graph.node) for out in node.output}
    nodes = list(graph.node)
    order, placed = [], [False] * len(nodes)

    def place(i: int) -> None:
        # Iterative depth-first placement of a node after its inputs' producers (graphs are deep).
        todo = [(i, False)]
        while todo:
            idx, expanded = todo.pop()
            if placed[idx]:
                continue
            if expanded:
                placed[idx] = True
                order.append(nodes[idx])
                continue
            todo.append((idx, True))
            for name in nodes[idx].input:
                p = producer_of.get(name)
                if name not in available and p is not None and not placed[p]:
                    todo.append((p, False))

    for i in range(len(nodes)):
        place(i)
    del graph.node[:]
    graph.node.extend(order)
