"""The identity of our multi-level RoIAlign op, shared by the exporter, ONNX Runtime and TensorRT.

One node type, three readers: the plugin-flavoured ONNX export emits it, TensorRT's ONNX parser
finds the plugin creator by ``op_type`` == plugin name plus the string attributes
``plugin_version`` / ``plugin_namespace`` (it ignores the node's domain), and ONNX Runtime runs
an adapted copy in onnxruntime-extensions' domain. The C++ side (plugin and runtime) reads the
same names from ``plugins/include/instseg/roi_align_contract.h``; a test checks the two agree.
"""

from __future__ import annotations

from typing import Any

OP_TYPE = "InstsegMultilevelRoIAlign"  # ONNX op_type == TensorRT plugin name
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
ONNX_DOMAIN = "instseg"  # the domain the exporter emits (an opset import of version 1)
ONNX_DOMAIN_VERSION = 1
ORT_DOMAIN = "ai.onnx.contrib"  # the only domain onnxruntime-extensions registers Python ops in

# Attribute name -> ("int" | "ints", default): every one becomes a TensorRT PluginField (INT ->
# kINT32, INTS -> kINT32 array). Defaults are detectron2's ROIPooler for Mask R-CNN.
ATTRIBUTES: dict[str, tuple[str, Any]] = {
    "output_size": ("int", 7),
    "sampling_ratio": ("int", 0),
    "aligned": ("int", 1),
    "canonical_box_size": ("int", 224),
    "canonical_level": ("int", 4),
    "featmap_strides": ("ints", (4, 8, 16, 32)),
}
# String attributes that select the TensorRT plugin creator (not PluginFields of ours).
VERSION_ATTRIBUTE = "plugin_version"
NAMESPACE_ATTRIBUTE = "plugin_namespace"


def uses_plugin(model_or_graph) -> bool:
    """Whether an ONNX ModelProto (or GraphProto) contains our RoIAlign node.

    By ``op_type``, as TensorRT's parser matches it, so both the exported node (domain
    ``instseg``) and its ONNX Runtime adaptation (domain ``ai.onnx.contrib``) count.
    """
    graph = getattr(model_or_graph, "graph", model_or_graph)
    return any(node.op_type == OP_TYPE for node in graph.node)
