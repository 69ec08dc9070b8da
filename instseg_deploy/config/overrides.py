"""yacs' value rules and detectron2's command-line ``KEY VALUE`` overrides.

``train_net.py --config-file X MODEL.WEIGHTS w.pth SOLVER.IMS_PER_BATCH 2`` ends in a flat
list of pairs that yacs' ``CfgNode.merge_from_list`` applies after the file. The same rules
check every value a YAML file sets (yacs' ``_merge_a_into_b``), so an override and the same
value written into a ``_BASE_``-inheriting file give the same config:

* strings that are Python literals become those literals (``ast.literal_eval``; yacs'
  ``_decode_cfg_value``), anything else stays a string; tuples are stored as lists;
* the result must have the type of the value it replaces (yacs'
  ``_check_and_coerce_cfg_value_type``): tuple<->list is allowed, a number given for a string
  key is kept as text, a default of None takes anything; beyond yacs, an int may set a float
  key (``SOLVER.BASE_LR 1``), and list elements are checked against the default's elements so
  a bad element is named here instead of failing while the model is built.
"""

from __future__ import annotations

import ast
import datetime
import difflib
import re
from collections.abc import Sequence
from typing import Any

from instseg_deploy.errors import ConfigError

# detectron2's top-level keys (d2_defaults.yaml; tests check the two agree). An override key
# must start with one of them, which keeps image names such as IMG_0001.JPG out of overrides.
DETECTRON2_ROOTS = frozenset({
    "VERSION", "MODEL", "INPUT", "DATASETS", "DATALOADER", "SOLVER", "TEST", "OUTPUT_DIR", "SEED",
    "CUDNN_BENCHMARK", "FLOAT32_PRECISION", "VIS_PERIOD", "GLOBAL",
})
_KEY_SHAPE = re.compile(r"[A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)*")
# A last component like these makes the word a file name (TEST.JPG), never a key.
_FILE_SUFFIXES = frozenset({
    "JPG", "JPEG", "PNG", "BMP", "TIF", "TIFF", "WEBP", "GIF", "PPM", "PGM", "PBM", "YAML", "YML", "JSON",
    "TXT", "PTH", "PT", "PKL", "ONNX", "XML", "BIN", "ENGINE", "PLAN",
})
_SCALARS = (str, int, float, bool, type(None))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if value is None:
        return "None"
    return type(value).__name__


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def literal(text: str) -> Any:
    """``ast.literal_eval(text)`` where that succeeds, else ``text`` (a plain string such as a path)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _plain(value: Any, key: str) -> Any:
    """A fresh copy made only of yacs' value types (lists for tuples); anything else is refused."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"config key {key}: mapping key {_shown(k)} is not a string")
            out[k] = _plain(v, f"{key}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, _SCALARS):
        return value
    hint = " (quote it to pass text)" if isinstance(value, (datetime.date, datetime.time)) else ""
    raise ConfigError(f"config key {key}: values of type {type(value).__name__} are not allowed{hint}; config "
                      "values are numbers, strings, booleans, None, lists and mappings")


def decode_value(value: Any, key: str) -> Any:
    """yacs' ``_decode_cfg_value``: a string that is a Python literal becomes it (only at the top:
    strings inside lists stay strings), then the value is copied as plain data."""
    if isinstance(value, str):
        value = literal(value)
    return _plain(value, key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_elements(value: list[Any], template: list[Any], key: str) -> None:
    """Elements must match the default's first element: numbers for numbers, lists for lists
    (or one flat list, which detectron2's anchor parameters broadcast to every level)."""
    if not template:
        return
    first = template[0]
    if isinstance(first, list):
        if all(isinstance(v, list) for v in value):
            for v in value:
                _check_elements(v, first, key)
            return
        if not any(isinstance(v, list) for v in value):
            _check_elements(value, first, key)
            return
        raise ConfigError(f"config key {key} expects a list of lists, got a mix of lists and values ({_shown(value)})")
    for v in value:
        ok = _is_number(v) if _is_number(first) else type(v) is type(first)
        if not ok:
            raise ConfigError(f"config key {key} expects a list of {'numbers' if _is_number(first) else _kind(first)}, "
                              f"got an element of type {_kind(v)} ({_shown(v)})")


def check_value(value: Any, original: Any, key: str) -> Any:
    """The value to store at ``key`` when ``value`` (raw, as read or typed) replaces ``original``.

    Raises one :class:`ConfigError` naming the key, the expected and the given type.
    """
    if isinstance(original, str) and isinstance(value, str):
        decoded = literal(value)
        # "1e-3" or "(1, 2)" for a string key is text: keep what was written.
        return decoded if isinstance(decoded, str) else value
    value = decode_value(value, key)
    if original is None or type(value) is type(original):
        if isinstance(value, list) and isinstance(original, list):
            _check_elements(value, original, key)
        return value
    if isinstance(original, str) and _is_number(value):
        return str(value)  # a YAML number for a string key (OUTPUT_DIR: 2024)
    if isinstance(original, float) and type(value) is int:
        return float(value)
    if isinstance(original, (list, tuple)) and isinstance(value, list):
        _check_elements(value, list(original), key)
        return value
    raise ConfigError(f"config key {key} expects {_kind(original)}, got {_kind(value)} ({_shown(value)})")


def suggest(name: str, node: dict[str, Any], prefix: str) -> str:
    """' (did you mean PREFIX.CLOSE?)' when a sibling key is spelled alike, else ''."""
    close = difflib.get_close_matches(name, [k for k in node if isinstance(k, str)], n=1, cutoff=0.75)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _locate(tree: dict[str, Any], key: Any) -> tuple[dict[str, Any], str]:
    """The mapping holding ``key`` (a dotted path) and its last part; unknown keys are errors."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"config override key {_shown(key)} is not a config key")
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        if not isinstance(node, dict):
            raise ConfigError(f"unknown config key {key}: {prefix} is a value, not a section")
        if part not in node:
            raise ConfigError(f"unknown config key {key}{suggest(part, node, prefix + '.' if prefix else '')}")
        if i < len(parts) - 1:
            node = node[part]
    if isinstance(node[parts[-1]], dict):
        inner = next(iter(node[parts[-1]]), "KEY")
        raise ConfigError(f"config key {key} is a section; override the keys inside it (e.g. {key}.{inner})")
    return node, parts[-1]


def apply_overrides(tree: dict[str, Any], overrides: Sequence[Any]) -> tuple[str, ...]:
    """Apply ``[KEY, VALUE, KEY, VALUE, ...]`` onto a merged config tree, in place (yacs'
    ``merge_from_list``). Keys must exist in the tree; values are checked like YAML values.

    Returns the applied list as strings (a non-string value as its ``repr``), to record in the
    loaded config, export metadata and training run folders; re-applying it gives the same tree.
    """
    items = list(overrides)
    if len(items) % 2:
        raise ConfigError(f"config overrides come in KEY VALUE pairs; got {len(items)} items, an odd number "
                          f"(the last is {_shown(items[-1])})")
    record: list[str] = []
    for key, value in zip(items[0::2], items[1::2]):
        node, leaf = _locate(tree, key)
        node[leaf] = check_value(value, node[leaf], key)
        record += [key, value if isinstance(value, str) else repr(value)]
    return tuple(record)


def looks_like_override_key(word: str, roots: frozenset[str] | set[str] = DETECTRON2_ROOTS) -> bool:
    """Whether a command-line word is shaped like a config key: an upper-case dotted path that
    starts with a top-level key (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``, ``SEED``), not a file
    name (``IMG_0001.JPG``, ``TEST.PNG``). Shape only: the filesystem is never consulted, so a
    file really named like a key is passed after ``--`` or as ``./MODEL.X``."""
    if not isinstance(word, str) or not _KEY_SHAPE.fullmatch(word):
        return False
    parts = word.split(".")
    return parts[0] in roots and not (len(parts) > 1 and parts[-1] in _FILE_SUFFIXES)


def split_overrides(args: Sequence[str], roots: frozenset[str] | set[str] = DETECTRON2_ROOTS,
                    ) -> tuple[list[str], list[str]]:
    """Split trailing arguments into (paths, overrides): each key-shaped word and the word after
    it form one override (the value is taken as written, so ``-1`` or a path is fine); other
    words are paths. After ``--`` every word is a path."""
    paths: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            paths.extend(args[i + 1:])
            break
        if not looks_like_override_key(word, roots):
            paths.append(word)
            i += 1
            continue
        value = args[i + 1] if i + 1 < len(args) else None
        if value is None or value == "--":
            raise ConfigError(f"config override {word} has no value (write {word} VALUE)")
        if looks_like_override_key(value, roots):
            raise ConfigError(f"config override {word} has no value: the word after it, {value}, is a config key")
        overrides += [word, value]
        i += 2
    return paths, overrides
