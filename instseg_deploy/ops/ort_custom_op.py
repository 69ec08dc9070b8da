"""The multi-level RoIAlign ONNX node: building it, and running it in ONNX Runtime on the CPU.

Its identity (op type, plugin version/namespace, domains, attributes) is ``roi_align_contract``.
The node is what the TensorRT ONNX parser turns into our plugin: op_type == plugin name, string
attributes ``plugin_version`` / ``plugin_namespace`` select the creator, every other attribute
becomes a PluginField (INT -> kINT32, INTS -> kINT32 array). The parser ignores the node's domain.

ONNX Runtime runs the same op through onnxruntime-extensions' Python custom ops, which call the
CPU twin. Those ops only live in the ``ai.onnx.contrib`` domain, take float32 tensors and cannot
read INTS attributes, so :func:`to_onnxruntime_model` adapts a copy of the model first: domain,
``featmap_strides`` as text, and Casts around FP16 nodes (exact: the twin computes in float32 and
rounds once to FP16, as the Cast back does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from instseg_deploy.ops.roi_align_contract import (
    ATTRIBUTES as CONTRACT_ATTRIBUTES,
)
from instseg_deploy.ops.roi_align_contract import (
    NAMESPACE_ATTRIBUTE,
    ONNX_DOMAIN,
    OP_TYPE,
    ORT_DOMAIN,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    VERSION_ATTRIBUTE,
)

ORT_NUM_LEVELS = 4  # Python custom ops have a fixed input count: rois + P2..P5

_ONNX_KINDS = {"int": onnx.AttributeProto.INT, "ints": onnx.AttributeProto.INTS}
# Attribute name -> (ONNX type, default), from the op contract.
ATTRIBUTES: dict[str, tuple[int, object]] = {
    name: (_ONNX_KINDS[kind], list(default) if kind == "ints" else default)
    for name, (kind, default) in CONTRACT_ATTRIBUTES.items()}
_INT_ATTRIBUTES = [name for name, (kind, _) in ATTRIBUTES.items() if kind == onnx.AttributeProto.INT]


def make_node(rois: str, features: Sequence[str], output: str, *, output_size: int,
              featmap_strides: Sequence[int], sampling_ratio: int = 0, aligned: bool = True,
              canonical_box_size: int = 224, canonical_level: int = 4, name: str | None = None,
              domain: str = ONNX_DOMAIN) -> onnx.NodeProto:
    """The one-node op as TensorRT's ONNX parser expects it (add ``domain`` to the opset imports)."""
    if len(features) != len(featmap_strides):
        raise ValueError(f"{len(features)} feature inputs for {len(featmap_strides)} strides")
    return helper.make_node(
        OP_TYPE, [rois, *features], [output], name=name, domain=domain,
        output_size=int(output_size), sampling_ratio=int(sampling_ratio), aligned=int(bool(aligned)),
        canonical_box_size=int(canonical_box_size), canonical_level=int(canonical_level),
        featmap_strides=[int(s) for s in featmap_strides],
        **{VERSION_ATTRIBUTE: PLUGIN_VERSION, NAMESPACE_ATTRIBUTE: PLUGIN_NAMESPACE})


# --- ONNX Runtime adaptation -------------------------------------------------------------------

def _adapted_attributes(node: onnx.NodeProto) -> list[onnx.AttributeProto]:
    values = {name: default for name, (_, default) in ATTRIBUTES.items()}
    values.update({a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in ATTRIBUTES})
    strides = values["featmap_strides"]
    if isinstance(strides, bytes):  # already adapted
        strides = [int(s) for s in strides.decode().replace(",", " ").split()]
    if len(strides) != ORT_NUM_LEVELS or len(node.input) != 1 + ORT_NUM_LEVELS:
        raise ValueError(f"ONNX Runtime runs {OP_TYPE} with exactly {ORT_NUM_LEVELS} feature maps")
    attrs = [helper.make_attribute(name, int(values[name])) for name in _INT_ATTRIBUTES]
    attrs.append(helper.make_attribute("featmap_strides", ",".join(str(int(s)) for s in strides)))
    return attrs


def _adapt_node(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Float32 casts in, the op in ai.onnx.contrib, CastLike back to the RoIs' type out."""
    tag = node.name or node.output[0]
    cast_inputs = [f"{tag}/{i}_as_float" for i in range(len(node.input))]
    casts = [helper.make_node("Cast", [src], [dst], to=TensorProto.FLOAT, name=f"{tag}/cast_in_{i}")
             for i, (src, dst) in enumerate(zip(node.input, cast_inputs))]
    pooled = f"{tag}/pooled_float"
    op = helper.make_node(OP_TYPE, cast_inputs, [pooled], name=node.name, domain=ORT_DOMAIN)
    op.attribute.extend(_adapted_attributes(node))
    back = helper.make_node("CastLike", [pooled, node.input[0]], [node.output[0]], name=f"{tag}/cast_out")
    return [*casts, op, back]


def to_onnxruntime_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose RoIAlign nodes ONNX Runtime can run after :func:`register_custom_op`.

    Needs default-domain opset >= 15 (CastLike); only nodes of the main graph are adapted.
    """
    adapted = onnx.ModelProto()
    adapted.CopyFrom(model)
    opsets = {o.domain: o.version for o in adapted.opset_import}
    if opsets.get("", opsets.get("ai.onnx", 0)) < 15:
        raise ValueError("to_onnxruntime_model needs ONNX opset >= 15 for CastLike")
    nodes = []
    for node in adapted.graph.node:
        nodes.extend(_adapt_node(node) if node.op_type == OP_TYPE else [node])
    del adapted.graph.node[:]
    adapted.graph.node.extend(nodes)
    if ORT_DOMAIN not in opsets:
        adapted.opset_import.append(helper.make_operatorsetid(ORT_DOMAIN, 1))
    return adapted


_registered = False


def _define_python_op() -> None:
    """Declares the op to onnxruntime-extensions once per process (its registry is global)."""
    global _registered
    if _registered:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError as exc:
        raise ImportError(f"running {OP_TYPE} in ONNX Runtime needs onnxruntime-extensions "
                          "(pip install onnxruntime-extensions)") from exc

    from instseg_deploy.ops.roi_align_twin import multilevel_roi_align

    attrs = {name: PyCustomOpDef.dt_int64 for name in _INT_ATTRIBUTES}
    attrs["featmap_strides"] = PyCustomOpDef.dt_string

    @onnx_op(op_type=OP_TYPE, inputs=[PyCustomOpDef.dt_float] * (1 + ORT_NUM_LEVELS),
             outputs=[PyCustomOpDef.dt_float], attrs=attrs)
    def _instseg_multilevel_roi_align(rois, *features, output_size, sampling_ratio, aligned,
                                      canonical_box_size, canonical_level, featmap_strides):
        strides = [int(s) for s in featmap_strides.replace(",", " ").split()]
        return multilevel_roi_align(np.asarray(rois), [np.asarray(f) for f in features], strides, output_size,
                                    sampling_ratio, bool(aligned), canonical_box_size, canonical_level)

    _registered = True


def register_custom_op(sess_options=None):
    """Make ``sess_options`` (a new onnxruntime.SessionOptions if None) able to run the op; returns it."""
    import onnxruntime as ort

    _define_python_op()
    from onnxruntime_extensions import get_library_path

    if sess_options is None:
        sess_options = ort.SessionOptions()
    sess_options.register_custom_ops_library(get_library_path())
    return sess_options


def create_session(model: onnx.ModelProto, sess_options=None):
    """A CPU InferenceSession for a model that contains the op (as the exporter emits it)."""
    import onnxruntime as ort

    adapted = to_onnxruntime_model(model)
    return ort.InferenceSession(adapted.SerializeToString(), register_custom_op(sess_options),
                                providers=["CPUExecutionProvider"])
