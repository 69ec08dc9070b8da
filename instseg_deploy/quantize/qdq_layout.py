"""Rewrite a symmetric-INT8 QDQ graph so that ONNX Runtime's x86 CPU kernels can fuse it.

ONNX Runtime runs ``DQ -> Conv -> Q`` as one integer QLinearConv. On x86 its fast kernels take
unsigned activations: a graph transformer turns each int8 ``Q -> DQ`` pair into uint8 (zero
point 128, same values) -- but only where a QuantizeLinear feeds exactly one
DequantizeLinear. ``onnxruntime.quantization`` shares one Q/DQ pair among all consumers of a
tensor (a ResNet block's output feeds the next block's conv1, its shortcut conv and the
residual Add), which leaves every such consumer conv in float.

This pass gives each quantized consumer its own Q/DQ pair (same zero point, the scale moved by
one float32 ulp so that common-subexpression elimination does not merge the pairs back) and
lets float consumers -- residual Adds, FPN upsampling, RoIAlign -- read the unquantized tensor,
as in the FP32 model. Conv/ConvTranspose/Gemm/MatMul inputs are quantized exactly as before; TensorRT reads
the same graph (its Q/DQ fusions do not need the float consumers quantized).
"""

from __future__ import annotations

import numpy as np

from instseg_deploy.model_file.onnx_edit import (
    INTEGER_LAYER_OPS,
    SAME_SCALE_ULPS,
    consumers_of,
    prune_dead_qdq,
    replace_input,
    sort_topologically,
)


def _nudged_scale(scale: np.ndarray, steps: int) -> np.ndarray:
    """``scale`` moved ``steps`` float32 ulps up: a distinct but equal-in-effect constant."""
    out = scale.astype(np.float32)
    for _ in range(steps):
        out = np.nextafter(out, np.float32(np.inf))
    return out


def dedicate_qdq_pairs(model) -> tuple[int, int]:
    """Rewrite ``model`` (ModelProto, in place); returns (float consumers rewired, pairs added)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = consumers_of(graph)
    initializers = {init.name: init for init in graph.initializer}
    added_nodes, rewired, added = [], 0, 0
    for dq in list(graph.node):
        q = producers.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or len(q.input) < 3 or q.input[1] not in initializers:
            continue  # weights (DQ of an initializer) and unusual pairs are left alone
        users = consumers.get(dq.output[0], [])
        quantized = [u for u in users if u.op_type in INTEGER_LAYER_OPS]
        if len(users) <= 1 or not quantized or len(quantized) > SAME_SCALE_ULPS + 1:
            continue  # (more copies than SAME_SCALE_ULPS could not be told apart from distinct quantizers)
        for user in users:
            if user.op_type not in INTEGER_LAYER_OPS:
                replace_input(user, dq.output[0], q.input[0])  # float consumer reads the float tensor
                rewired += 1
        scale = numpy_helper.to_array(initializers[q.input[1]])
        for k, user in enumerate(quantized[1:], start=1):
            scale_name = f"{q.input[1]}_dedicated{k}"
            graph.initializer.append(numpy_helper.from_array(_nudged_scale(scale, k), scale_name))
            q_out, dq_out = f"{q.output[0]}_dedicated{k}", f"{dq.output[0]}_dedicated{k}"
            added_nodes.append(helper.make_node("QuantizeLinear", [q.input[0], scale_name, q.input[2]], [q_out],
                                                name=f"{q.name}_dedicated{k}"))
            added_nodes.append(helper.make_node("DequantizeLinear", [q_out, scale_name, dq.input[2]], [dq_out],
                                                name=f"{dq.name}_dedicated{k}"))
            replace_input(user, dq.output[0], dq_out)
            added += 1
    if added_nodes:
        graph.node.extend(added_nodes)
    prune_dead_qdq(graph)
    sort_topologically(graph)
    return rewired, added


def float_pre_pool_activations(model) -> list[str]:
    """Keep float the activation of a Conv whose Relu feeds only MaxPool (ResNet's stem:
    ``Conv -> Q/DQ -> Relu -> MaxPool -> Q/DQ`` becomes ``Conv -> Relu -> MaxPool -> Q/DQ``), in place;
    returns the names of those Convs.

    OpenVINO's CPU plugin mis-fuses that Q/DQ pair (the Conv's bias is lost when the FakeQuantize is
    folded through Relu and MaxPool: 6032 detections where ORT finds 3917 on the fixture val set,
    bbox AP -3.8); without it OpenVINO matches ORT. The next Conv's input is quantized after the
    MaxPool as before, so ONNX Runtime and TensorRT lose only the stem conv's int8 output.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = consumers_of(graph)
    kept_float = []
    for q in list(graph.node):
        source = producers.get(q.input[0]) if q.op_type == "QuantizeLinear" else None
        if source is None or source.op_type != "Conv":
            continue
        dqs = consumers.get(q.output[0], [])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
            continue
        relus = consumers.get(dqs[0].output[0], [])
        if not relus or any(r.op_type != "Relu" for r in relus):
            continue
        if not all(c.op_type == "MaxPool" for r in relus for c in consumers.get(r.output[0], [])):
            continue
        for relu in relus:
            replace_input(relu, dqs[0].output[0], q.input[0])
        kept_float.append(source.name)
    prune_dead_qdq(graph)
    return kept_float
