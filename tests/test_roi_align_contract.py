"""The RoIAlign op's identity is written once per language: the C++ header agrees with the Python module.

TensorRT finds the plugin by name/version/namespace and hands it the node's attributes by name,
so a drift between the exporter (Python) and the plugin (C++) would only show as "plugin not
found" or a silently defaulted field on a TensorRT machine. These checks read the sources; they
need no compiler, TensorRT or GPU.
"""

from __future__ import annotations

import re
from pathlib import Path

from onnx import helper

from instseg_deploy.ops import ort_custom_op
from instseg_deploy.ops import roi_align_contract as contract

REPO = Path(__file__).resolve().parent.parent
HEADER = REPO / "plugins" / "include" / "instseg" / "roi_align_contract.h"
PLUGIN_FIELDS = REPO / "plugins" / "src" / "roi_align_plugin_fields.cpp"


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def _header_constants() -> tuple[dict[str, str], dict[str, list[int]]]:
    """({kName: string value}, {kName: integer value(s)}) from the header's constexpr definitions."""
    text = HEADER.read_text()
    strings = dict(re.findall(r'inline constexpr char (k\w+)\[\] = "([^"]*)";', text))
    integers = {name: [int(v) for v in re.findall(r"-?\d+", value)]
                for name, value in re.findall(r"inline constexpr int32_t (k\w+)(?:\[\])? = \{?([-\d, ]+)\}?;", text)}
    return strings, integers


def test_header_identity_matches_the_python_contract():
    strings, _ = _header_constants()
    assert {name: strings.get(name) for name in ("kOpType", "kPluginVersion", "kPluginNamespace", "kOnnxDomain",
                                                 "kOrtDomain")} == {
        "kOpType": contract.OP_TYPE, "kPluginVersion": contract.PLUGIN_VERSION,
        "kPluginNamespace": contract.PLUGIN_NAMESPACE, "kOnnxDomain": contract.ONNX_DOMAIN,
        "kOrtDomain": contract.ORT_DOMAIN}


def test_header_attributes_and_defaults_match_the_python_contract():
    strings, integers = _header_constants()
    names = {value for key, value in strings.items()
             if key not in ("kOpType", "kPluginVersion", "kPluginNamespace", "kOnnxDomain", "kOrtDomain")}
    assert names == set(contract.ATTRIBUTES)
    for name, (kind, default) in contract.ATTRIBUTES.items():
        assert strings[f"k{_camel(name)}"] == name
        expected = list(default) if kind == "ints" else [default]
        assert integers[f"kDefault{_camel(name)}"] == expected, name


def test_the_plugin_reads_the_fields_by_the_contract_names():
    """roi_align_plugin_fields.cpp takes every field name from the contract header, spelling none itself."""
    source = PLUGIN_FIELDS.read_text()
    used = set(re.findall(r"using roi_align_contract::(k\w+);", source))
    assert used == {f"k{_camel(name)}" for name in contract.ATTRIBUTES}
    assert not [name for name in contract.ATTRIBUTES if f'"{name}"' in source]


def test_the_exported_node_carries_exactly_the_contract_attributes():
    node = ort_custom_op.make_node("rois", ["p2", "p3", "p4", "p5"], "pooled", output_size=14,
                                   featmap_strides=[4, 8, 16, 32])
    assert (node.op_type, node.domain) == (contract.OP_TYPE, contract.ONNX_DOMAIN)
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert set(values) == set(contract.ATTRIBUTES) | {contract.VERSION_ATTRIBUTE, contract.NAMESPACE_ATTRIBUTE}
    assert values[contract.VERSION_ATTRIBUTE].decode() == contract.PLUGIN_VERSION
    assert values[contract.NAMESPACE_ATTRIBUTE].decode() == contract.PLUGIN_NAMESPACE


def test_uses_plugin_finds_the_node_in_either_domain():
    node = ort_custom_op.make_node("rois", ["p2", "p3", "p4", "p5"], "pooled", output_size=7,
                                   featmap_strides=[4, 8, 16, 32])
    plugin = helper.make_model(helper.make_graph([node], "g", [], []))
    adapted = ort_custom_op.to_onnxruntime_model(helper.make_model(
        helper.make_graph([node], "g", [], []), opset_imports=[helper.make_operatorsetid("", 17)]))
    plain = helper.make_model(helper.make_graph([helper.make_node("RoiAlign", ["x", "r", "i"], ["y"])], "g", [], []))
    assert contract.uses_plugin(plugin) and contract.uses_plugin(plugin.graph)
    assert contract.uses_plugin(adapted) and {n.domain for n in adapted.graph.node} >= {contract.ORT_DOMAIN}
    assert not contract.uses_plugin(plain)
