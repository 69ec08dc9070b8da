"""The Q/DQ layout OpenVINO's CPU plugin fuses, made at load time from an INT8 QDQ file.

`instseg quantize` writes the layout ONNX Runtime's x86 kernels fuse (``quantize.qdq_layout``):
each quantized consumer of a tensor gets its own Q/DQ pair, the copies' scales a few float32 ulps
apart so that no optimiser merges them again, and every quantized layer's output is quantized too,
which ONNX Runtime's integer kernels need even where only float layers read it. OpenVINO turns each
pair into a FakeQuantize, so it computed the same quantization once per consumer, unfused (106 of
955 ms in stand-alone FakeQuantize for R50-FPN at 800x1344 on a 2-core EPYC), and wrote int8 outputs
only to dequantize them at once (the RPN conv before the float objectness/delta convs, the box head
before the float predictors).

:func:`share_qdq_pairs` merges the copies back into one pair per quantized tensor (the same
quantization to a few ulps of its scale); :func:`drop_float_only_output_pairs` lets layers that only
float layers read hand them their float output, as the FP32 model does. Together with quantizing the
mask deconvolution they took OpenVINO INT8 from 2.42x to 2.59x ONNX Runtime FP32, its AP against
f32 from +0.08 / -0.32 to +0.44 / -0.02 (bbox / segm, fixture val set; benchmarks/OPENVINO.md).

Measured and not done: letting the residual Adds read the dequantized tensor
(``onnxruntime.quantization``'s own placement) was faster still but cost -0.41 bbox / -0.51 segm AP
on the fixture val set, and moving every float consumer (Resize, RoIAlign) changed the detections.
"""

from __future__ import annotations

import numpy as np

from instseg_deploy.model_file.onnx_edit import (
    INTEGER_LAYER_OPS,
    QDQ_OPS,
    SAME_SCALE_ULPS,
    consumers_of,
    prune_dead_qdq,
    replace_input,
    sort_topologically,
)


def _qdq_constants(graph) -> dict[str, np.ndarray]:
    """The scale and zero-point initializers of the graph's Q/DQ nodes, as arrays (not the weights)."""
    from onnx import numpy_helper

    wanted = {name for node in graph.node if node.op_type in QDQ_OPS for name in node.input[1:]}
    return {init.name: numpy_helper.to_array(init) for init in graph.initializer if init.name in wanted}


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _same_effect(a, b, constants: dict[str, np.ndarray]) -> bool:
    """True when two QuantizeLinear (or two DequantizeLinear) nodes compute the same function."""
    if len(a.input) != len(b.input) or _attributes(a) != _attributes(b):
        return False
    scale_a, scale_b = constants.get(a.input[1]), constants.get(b.input[1])
    if scale_a is None or scale_b is None or scale_a.shape != scale_b.shape or \
            not scale_a.dtype == scale_b.dtype == np.float32:
        return False
    ulps = np.abs(scale_a.view(np.int32).astype(np.int64) - scale_b.view(np.int32))
    if ulps.max(initial=0) > SAME_SCALE_ULPS:
        return False
    if len(a.input) > 2:
        zero_a, zero_b = constants.get(a.input[2]), constants.get(b.input[2])
        if zero_a is None or zero_b is None or zero_a.dtype != zero_b.dtype or not np.array_equal(zero_a, zero_b):
            return False
    return True


def share_qdq_pairs(model) -> int:
    """Rewrite ``model`` (ModelProto, in place); returns the number of Q/DQ pairs merged into another."""
    graph = model.graph
    constants = _qdq_constants(graph)
    consumers = consumers_of(graph)
    graph_outputs = {o.name for o in graph.output}
    quantizers: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) >= 2 and node.input[1] in constants:
            quantizers.setdefault(node.input[0], []).append(node)
    merged = 0
    for qs in quantizers.values():
        # (Q, its DQs) where the Q feeds only DequantizeLinear nodes and nothing leaves the graph.
        pairs = [(q, users) for q in qs if (users := consumers.get(q.output[0], []))
                 and all(u.op_type == "DequantizeLinear" for u in users)
                 and q.output[0] not in graph_outputs and not any(u.output[0] in graph_outputs for u in users)]
        if not pairs:
            continue
        kept_q, kept_dqs = pairs[0]
        kept = kept_dqs[0].output[0]
        for q, dqs in pairs:
            if q is not kept_q and not _same_effect(kept_q, q, constants):
                continue
            for dq in dqs:
                if dq.output[0] == kept or not _same_effect(kept_dqs[0], dq, constants):
                    continue
                for user in consumers.get(dq.output[0], []):
                    replace_input(user, dq.output[0], kept)
                merged += 1
    prune_dead_qdq(graph)
    sort_topologically(graph)
    return merged


def _runs_in_integer(node, producers: dict) -> bool:
    """A layer whose weights (input 1) come through a DequantizeLinear: it consumes quantized values."""
    weights = producers.get(node.input[1]) if node.op_type in INTEGER_LAYER_OPS and len(node.input) > 1 else None
    return weights is not None and weights.op_type == "DequantizeLinear"


def drop_float_only_output_pairs(model) -> int:
    """Remove the Q/DQ pairs on integer layers' outputs that no integer layer reads (in place); returns
    how many. Their readers take the layer's float output instead."""
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = consumers_of(graph)
    graph_outputs = {o.name for o in graph.output}
    dropped = 0
    for q in list(graph.node):
        source = producers.get(q.input[0]) if q.op_type == "QuantizeLinear" else None
        if source is None or source.op_type not in INTEGER_LAYER_OPS or not _runs_in_integer(source, producers):
            continue
        dqs = consumers.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" or d.output[0] in graph_outputs for d in dqs):
            continue
        readers = [r for d in dqs for r in consumers.get(d.output[0], [])]
        if any(_runs_in_integer(r, producers) for r in readers):
            continue
        for dq in dqs:
            for reader in consumers.get(dq.output[0], []):
                replace_input(reader, dq.output[0], q.input[0])
        dropped += 1
    prune_dead_qdq(graph)
    return dropped
