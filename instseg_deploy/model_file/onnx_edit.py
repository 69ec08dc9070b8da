"""Small in-place edits of an ONNX graph shared by the passes that rewrite Q/DQ layouts.

``quantize.qdq_layout`` writes the layout ONNX Runtime fuses; ``runtime.openvino_qdq`` turns it
into the one OpenVINO fuses. Both find consumers, move inputs, drop dead Q/DQ nodes and restore
the topological order ONNX requires.
"""

from __future__ import annotations

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


def prune_dead_qdq(graph) -> None:
    """Drop Q/DQ nodes whose outputs nothing reads any more."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


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
