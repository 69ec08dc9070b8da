"""Read detectron2 YAML configs (full dumps or model-zoo files with ``_BASE_``).

Mirrors yacs/detectron2 semantics without importing them: files are merged onto
detectron2's defaults (``d2_defaults.yaml``), string values are ``literal_eval``-ed and
type-checked as yacs does (``overrides.check_value``; so ``("coco_2017_train",)`` becomes a
list), command-line ``KEY VALUE`` overrides are applied on top, then the model part is
validated and turned into a typed :class:`ModelConfig`.

A config file is untrusted input (a downloaded model-zoo file names its own ``_BASE_``), so
reading is bounded: regular files only, at most ``MAX_CONFIG_BYTES``; ``_BASE_`` must name a
.yaml/.yml file; YAML aliases may expand to at most ``MAX_YAML_VALUES`` values and nesting
is capped at ``MAX_YAML_DEPTH``; only plain YAML tags are read.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import stat
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from instseg_deploy.config.overrides import apply_overrides, check_value, decode_value, suggest
from instseg_deploy.config.types import (
    AnchorConfig,
    BoxHeadConfig,
    FPNConfig,
    InputConfig,
    InstsegConfig,
    MaskHeadConfig,
    ModelConfig,
    PoolerConfig,
    ResNetConfig,
    ROIHeadsConfig,
    RPNConfig,
)
from instseg_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

_DEFAULTS_FILE = Path(__file__).with_name("d2_defaults.yaml")
MAX_CONFIG_BYTES = 1 << 20  # a full detectron2 dump is ~10 kB
MAX_YAML_VALUES = 100_000  # after expanding aliases; a full dump has ~600
MAX_YAML_DEPTH = 32  # detectron2's deepest key is 4 mappings (+2 list levels)
_MAX_BASE_DEPTH = 16
_YAML_SUFFIXES = (".yaml", ".yml")
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PSEUDO_FS = (Path("/proc"), Path("/sys"), Path("/dev"))
_PLAIN_TAGS = {None, "!"} | {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
# libyaml's parser when present (same events and errors, faster).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(_DEFAULTS_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def default_tree() -> dict[str, Any]:
    """A fresh copy of detectron2's default config tree."""
    return copy.deepcopy(_defaults())


# --- reading one file ----------------------------------------------------------------------

def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _read_bytes(path: Path, via: Path | None) -> tuple[Path, bytes]:
    """(resolved path, contents) of a regular config file of at most MAX_CONFIG_BYTES.

    Opened non-blocking and checked on the open descriptor, so a FIFO or device (or a file
    swapped for one) is refused instead of hanging or streaming forever.
    """
    named = f" (the _BASE_ of {via})" if via is not None else ""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}{named}") from None
    except (OSError, RuntimeError) as e:
        raise ConfigError(f"cannot read config file {path}{named}: {getattr(e, 'strerror', None) or e}") from None
    for root in _PSEUDO_FS:
        if real.is_relative_to(root):
            raise ConfigError(f"config file {path}{named} is not a regular file (it is under {root})")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}{named}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError(f"config file {path}{named} is {_file_kind(st.st_mode)}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path}{named} is larger than {MAX_CONFIG_BYTES >> 20} MiB "
                              f"({st.st_size} bytes); a detectron2 config is a few kB")
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:  # grew after the fstat
        raise ConfigError(f"config file {path}{named} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    return real, data


def _yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def _check_events(text: str, source: str) -> None:
    """Walk the YAML event stream (no objects built) and refuse, before loading: tags that are
    not plain data, nesting deeper than MAX_YAML_DEPTH and documents that expand to more than
    MAX_YAML_VALUES values once aliases are substituted (the "billion laughs"). Linear in the
    file: each anchor's expanded size and height are recorded when it closes."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded values, height)
    stack: list[list[Any]] = []  # open collections: [values inside, anchor, height of the tallest child]
    total = 0

    def place(values: int, height: int, new: bool) -> None:
        """A node of ``values`` values and ``height`` levels lands in the innermost open collection."""
        nonlocal total
        if new:
            total += values
            if total > MAX_YAML_VALUES:
                raise ConfigError(f"{source}: more than {MAX_YAML_VALUES} YAML values once aliases are expanded "
                                  "(an alias bomb?)")
            if len(stack) + height > MAX_YAML_DEPTH:
                raise ConfigError(f"{source}: YAML nested deeper than {MAX_YAML_DEPTH} levels")
        if stack:
            stack[-1][0] += values
            stack[-1][2] = max(stack[-1][2], height)

    try:
        for event in yaml.parse(text, Loader=_Loader):
            tag = getattr(event, "tag", None)
            if tag not in _PLAIN_TAGS:
                raise ConfigError(f"{source}: YAML tag {tag} is not allowed (a config is plain data)")
            if isinstance(event, yaml.AliasEvent):
                if any(entry[1] == event.anchor for entry in stack):
                    raise ConfigError(f"{source}: recursive YAML alias *{event.anchor}")
                place(*anchors.get(event.anchor, (1, 0)), new=True)  # an unknown anchor is the loader's error
            elif isinstance(event, yaml.ScalarEvent):
                place(1, 0, new=True)
                if event.anchor is not None:
                    anchors[event.anchor] = (1, 0)
            elif isinstance(event, yaml.CollectionStartEvent):
                place(1, 1, new=True)  # the collection itself, checked at its depth before anything inside it
                stack.append([0, event.anchor, 0])
            elif isinstance(event, yaml.CollectionEndEvent):
                values, anchor, height = stack.pop()
                if anchor is not None:
                    anchors[anchor] = (values + 1, height + 1)
                place(values, height + 1, new=False)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({_yaml_problem(e)})") from None


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    """The top-level mapping of one config file's bytes (``_BASE_`` not resolved yet)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte at offset {e.start}); "
                          "a config is a YAML text file") from None
    return _parse_text(text.removeprefix("\ufeff"), str(path))


def _parse_text(text: str, source: str) -> dict[str, Any]:
    _check_events(text, source)
    try:
        tree = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({_yaml_problem(e)})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. an int of 5000 digits
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{source}: not valid YAML ({problem})") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys at the top level, got {type(tree).__name__}")
    for key in tree:
        if not isinstance(key, str):
            raise ConfigError(f"{source}: top-level config key {key!r} is not a string")
    return _unshared(tree)


def _unshared(node: Any) -> Any:
    """A copy in which aliased mappings and lists are separate objects (bounded by the event
    check), so merging a file into one alias of its _BASE_ cannot change the others."""
    if isinstance(node, dict):
        return {k: _unshared(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshared(v) for v in node]
    return node


def tree_from_text(text: str, source: str) -> dict[str, Any]:
    """A config tree from YAML text stored elsewhere (an exported model's metadata), read with
    the same limits as a file; for :func:`config_from_tree`. ``_BASE_`` is refused: stored
    trees are already merged, and a stored file must not name files on this machine."""
    if not isinstance(text, str):
        raise ConfigError(f"{source}: the stored config is not YAML text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: the stored config is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    tree = _parse_text(text, source)
    if "_BASE_" in tree:
        raise ConfigError(f"{source}: a stored config cannot have a _BASE_")
    return tree


def _base_path(base: Any, path: Path) -> Path:
    """Where ``_BASE_: base`` in ``path`` points (detectron2: relative to the including file)."""
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: _BASE_ must be a path string")
    if base.startswith(("http://", "https://")):
        raise ConfigError(f"{path}: _BASE_ {base} is a URL; download it and point _BASE_ at the local file")
    base_path = Path(base).expanduser() if base.startswith("~") else Path(base)
    if base_path.suffix.lower() not in _YAML_SUFFIXES:
        raise ConfigError(f"{path}: _BASE_ {base} must name a .yaml or .yml file")
    return base_path if base_path.is_absolute() else path.parent / base_path


def _read_yaml(path: Path, chain: tuple[Path, ...] = (), via: Path | None = None) -> dict[str, Any]:
    """Read one YAML file with its ``_BASE_`` chain resolved (base first, file on top)."""
    real, data = _read_bytes(path, via)
    if real in chain:
        loop = " -> ".join(str(p) for p in (*chain[chain.index(real):], real))
        raise ConfigError(f"{path}: _BASE_ cycle ({loop})")
    if len(chain) >= _MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: _BASE_ chain deeper than {_MAX_BASE_DEPTH} files")
    tree = _parse(path, data)
    if "_BASE_" not in tree:
        return tree
    base_path = _base_path(tree.pop("_BASE_"), path)
    merged = _read_yaml(base_path, (*chain, real), via=path)
    _merge_files(merged, tree, prefix="")
    return merged


def _merge_files(dst: dict[str, Any], src: dict[str, Any], prefix: str) -> None:
    """A file onto its ``_BASE_`` (detectron2's merge_a_into_b): mappings merge, values replace."""
    for key, value in src.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and key in dst:
            if not isinstance(dst[key], dict):
                raise ConfigError(f"config key {full} is a mapping here but a value in the _BASE_ file")
            _merge_files(dst[key], value, prefix=full + ".")
        else:
            dst[key] = value


# --- merging onto detectron2's defaults ----------------------------------------------------

def _check_key_names(key: str, value: Any, full: str) -> None:
    """Unknown keys are kept, so they must at least be key names: a line of /etc/shadow
    (``root:*:19000:0:99999:7:::``) parses as a one-key mapping."""
    if not _KEY_NAME.fullmatch(key):
        raise ConfigError(f"config key {full[:80]!r} is not a config key name (letters, digits and _)")
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):  # non-string keys are decode_value's error
                _check_key_names(k, v, f"{full}.{k}")


def _merge_defaults(dst: dict[str, Any], src: dict[str, Any], prefix: str, unknown: list[str]) -> None:
    """yacs' _merge_a_into_b onto the defaults: every known key's value is decoded and checked
    against the default's type; unknown MODEL keys are errors (the model may need code we do
    not have); other unknown keys are kept as they are and listed in ``unknown``."""
    for key, value in src.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {prefix}{key!r} is not a string")
        full = f"{prefix}{key}"
        if key not in dst:
            if full.startswith("MODEL."):
                raise ConfigError(f"unknown config key {full}{suggest(key, dst, prefix)}: it is not a detectron2 "
                                  "MODEL key, so this model may need code we do not have")
            _check_key_names(key, value, full)
            dst[key] = decode_value(value, full)
            unknown.append(full)
        elif isinstance(dst[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full} is a section: expected a mapping, got "
                                  f"{type(value).__name__} ({value!r:.60})")
            _merge_defaults(dst[key], value, prefix=full + ".", unknown=unknown)
        else:
            dst[key] = check_value(value, dst[key], full)


def _on_defaults(tree: dict[str, Any], source: str, warn_unknown: bool) -> tuple[dict[str, Any], tuple[str, ...]]:
    full = default_tree()
    unknown: list[str] = []
    _merge_defaults(full, tree, prefix="", unknown=unknown)
    if unknown and warn_unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        logger.warning("%s: not detectron2 config keys, kept as written but read by nothing here: %s",
                       source or "config", shown)
    return full, tuple(unknown)


def _check_tree(tree: Any, source: str) -> None:
    """The YAML limits for a tree built elsewhere (a checkpoint's pickle can share one list many
    times, like YAML aliases): expanded size, depth and cycles, in time linear in its objects."""
    seen: dict[int, tuple[int, int]] = {}  # id -> (expanded values, height)
    open_ids: set[int] = set()

    def walk(node: Any, depth: int) -> tuple[int, int]:
        if not isinstance(node, (dict, list, tuple)):
            return 1, 0
        if id(node) in open_ids:
            raise ConfigError(f"{source}: the config contains itself (a recursive structure)")
        if id(node) not in seen:
            if depth >= MAX_YAML_DEPTH:
                raise ConfigError(f"{source}: config nested deeper than {MAX_YAML_DEPTH} levels")
            open_ids.add(id(node))
            values, height = 1, 0
            for child in node.values() if isinstance(node, dict) else node:
                v, h = walk(child, depth + 1)
                values, height = values + v, max(height, h)
                if values > MAX_YAML_VALUES:
                    raise ConfigError(f"{source}: the config expands to more than {MAX_YAML_VALUES} values")
            open_ids.discard(id(node))
            seen[id(node)] = (values, height + 1)
        values, height = seen[id(node)]
        if depth + height > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: config nested deeper than {MAX_YAML_DEPTH} levels")
        return values, height

    walk(tree, 0)


def merge_tree(path: str | Path) -> dict[str, Any]:
    """detectron2's default tree with the file (and its bases) merged on top."""
    return _on_defaults(_read_yaml(Path(path)), str(path), warn_unknown=True)[0]


def _build(tree: dict[str, Any], source: str, overrides: Sequence[Any], unknown: tuple[str, ...]) -> InstsegConfig:
    applied = apply_overrides(tree, overrides)
    return InstsegConfig(model=model_config_from_tree(tree), raw=tree, source=source, overrides=applied,
                         unknown_keys=unknown)


def load_config(path: str | Path, overrides: Sequence[Any] = ()) -> InstsegConfig:
    """Load a detectron2 config file into a typed :class:`InstsegConfig`.

    ``overrides``: detectron2's trailing ``KEY VALUE ...`` list, applied after ``_BASE_``
    merging (see :func:`~instseg_deploy.config.overrides.apply_overrides`); recorded in
    ``InstsegConfig.overrides``.
    """
    tree, unknown = _on_defaults(_read_yaml(Path(path)), str(path), warn_unknown=True)
    return _build(tree, str(path), overrides, unknown)


def config_from_tree(tree: dict[str, Any], source: str = "", overrides: Sequence[Any] = (),
                     warn_unknown: bool = True) -> InstsegConfig:
    """Typed config from an already-merged tree (e.g. one stored in a checkpoint), with the
    same checks as a file; ``warn_unknown=False`` for a tree whose unknown keys were reported
    when it was loaded."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source or 'config'}: expected a mapping of config keys, got {type(tree).__name__}")
    if "_BASE_" in tree:
        raise ConfigError(f"{source or 'config'}: a merged config cannot have a _BASE_")
    _check_tree(tree, source or "config")
    full, unknown = _on_defaults(tree, source, warn_unknown)
    return _build(full, source, overrides, unknown)


def dump_tree(tree: dict[str, Any]) -> str:
    """YAML text of a config tree, loadable by detectron2 and by :func:`load_config`."""
    return yaml.safe_dump(tree, sort_keys=True)


# --- validation ---------------------------------------------------------------------------

_SUPPORTED_NORMS = ("", "FrozenBN", "BN", "SyncBN", "naiveSyncBN", "GN")


def _require(tree: dict[str, Any], key: str, allowed: tuple[Any, ...]) -> Any:
    value = _get(tree, key)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"unsupported config value {key}={value!r} (supported: {shown})")
    return value


def _get(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config key {key} is missing")
        node = node[part]
    return node


def _pooler(tree: dict[str, Any], head: str) -> PoolerConfig:
    pooler_type = _require(tree, f"MODEL.{head}.POOLER_TYPE", ("ROIAlignV2", "ROIAlign"))
    return PoolerConfig(
        resolution=int(_get(tree, f"MODEL.{head}.POOLER_RESOLUTION")),
        sampling_ratio=int(_get(tree, f"MODEL.{head}.POOLER_SAMPLING_RATIO")),
        aligned=pooler_type == "ROIAlignV2",
    )


# Values that would build a model without an error and then silently find nothing (or everything).
_RANGES = (
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, 1.0, "scores are below 1, so 1 or more keeps no detection"),
    ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.0, 1.0, "an IoU"),
    ("MODEL.ROI_HEADS.NUM_CLASSES", 1, 100_000, "classes"),
    ("TEST.DETECTIONS_PER_IMAGE", 1, 100_000, "detections kept per image"),
    ("MODEL.RPN.PRE_NMS_TOPK_TEST", 1, 10_000_000, "proposals"),
    ("MODEL.RPN.POST_NMS_TOPK_TEST", 1, 10_000_000, "proposals"),
    ("MODEL.RPN.NMS_THRESH", 0.0, 1.0, "an IoU"),
    ("INPUT.MIN_SIZE_TEST", 1, 100_000, "pixels"),
    ("INPUT.MAX_SIZE_TEST", 1, 100_000, "pixels"),
)


def _check_ranges(tree: dict[str, Any]) -> None:
    for key, low, high, what in _RANGES:
        value = _get(tree, key)
        upper_ok = value < high if key.endswith("SCORE_THRESH_TEST") else value <= high
        if not (low <= value and upper_ok):
            bound = f"[{low}, {high})" if key.endswith("SCORE_THRESH_TEST") else f"[{low}, {high}]"
            raise ConfigError(f"{key} {value!r} is outside {bound} ({what})")


def _validate_model(tree: dict[str, Any]) -> None:
    """Reject keys that would change the model in ways this implementation does not build."""
    _require(tree, "MODEL.META_ARCHITECTURE", ("GeneralizedRCNN",))
    _require(tree, "MODEL.BACKBONE.NAME", ("build_resnet_fpn_backbone",))
    _require(tree, "MODEL.PROPOSAL_GENERATOR.NAME", ("RPN",))
    _require(tree, "MODEL.RPN.HEAD_NAME", ("StandardRPNHead",))
    _require(tree, "MODEL.ANCHOR_GENERATOR.NAME", ("DefaultAnchorGenerator",))
    _require(tree, "MODEL.ROI_HEADS.NAME", ("StandardROIHeads",))
    _require(tree, "MODEL.ROI_BOX_HEAD.NAME", ("FastRCNNConvFCHead",))
    _require(tree, "MODEL.MASK_ON", (True,))
    _require(tree, "MODEL.ROI_MASK_HEAD.NAME", ("MaskRCNNConvUpsampleHead",))
    _require(tree, "MODEL.KEYPOINT_ON", (False,))
    _require(tree, "MODEL.LOAD_PROPOSALS", (False,))
    _require(tree, "MODEL.RESNETS.DEPTH", (18, 34, 50, 101, 152))
    _require(tree, "MODEL.RESNETS.RES5_DILATION", (1,))
    _require(tree, "MODEL.RESNETS.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.FPN.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.FPN.FUSE_TYPE", ("sum", "avg"))
    _require(tree, "MODEL.ROI_BOX_HEAD.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.ROI_MASK_HEAD.NORM", _SUPPORTED_NORMS)
    _require(tree, "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", (False,))
    _require(tree, "MODEL.ROI_BOX_HEAD.USE_FED_LOSS", (False,))
    _require(tree, "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", (False,))
    _require(tree, "INPUT.FORMAT", ("BGR", "RGB"))
    _require(tree, "TEST.AUG.ENABLED", (False,))
    _check_ranges(tree)
    if any(_get(tree, "MODEL.RESNETS.DEFORM_ON_PER_STAGE")):
        raise ConfigError("unsupported config value MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convs")
    if _get(tree, "MODEL.RESNETS.OUT_FEATURES") != ["res2", "res3", "res4", "res5"] or _get(
        tree, "MODEL.FPN.IN_FEATURES"
    ) != ["res2", "res3", "res4", "res5"]:
        raise ConfigError("unsupported FPN inputs: MODEL.RESNETS.OUT_FEATURES and MODEL.FPN.IN_FEATURES "
                          "must be res2..res5")
    if _get(tree, "MODEL.RPN.IN_FEATURES") != ["p2", "p3", "p4", "p5", "p6"]:
        raise ConfigError("unsupported config value MODEL.RPN.IN_FEATURES (supported: p2..p6)")
    if _get(tree, "MODEL.ROI_HEADS.IN_FEATURES") != ["p2", "p3", "p4", "p5"]:
        raise ConfigError("unsupported config value MODEL.ROI_HEADS.IN_FEATURES (supported: p2..p5)")
    if len(_get(tree, "MODEL.RPN.CONV_DIMS")) != 1:
        raise ConfigError("unsupported config value MODEL.RPN.CONV_DIMS: only one RPN conv is supported")
    angles = _get(tree, "MODEL.ANCHOR_GENERATOR.ANGLES")
    if angles not in ([[-90, 0, 90]], [[0]], [[-90.0, 0.0, 90.0]]):
        # Angles only matter for rotated anchors; the default value is ignored by detectron2.
        raise ConfigError("unsupported config value MODEL.ANCHOR_GENERATOR.ANGLES (rotated anchors)")
    depth = _get(tree, "MODEL.RESNETS.DEPTH")
    if depth in (18, 34) and _get(tree, "MODEL.RESNETS.RES2_OUT_CHANNELS") != 64:
        raise ConfigError("MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for ResNet-18/34")
    if int(_get(tree, "MODEL.ROI_HEADS.NUM_CLASSES")) < 1:
        raise ConfigError("MODEL.ROI_HEADS.NUM_CLASSES must be >= 1")
    for key in ("MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD"):
        if len(_get(tree, key)) != 3:
            raise ConfigError(f"{key} must have 3 values (one per image channel), got {_get(tree, key)}")
    if 0 in _get(tree, "MODEL.PIXEL_STD"):
        raise ConfigError("MODEL.PIXEL_STD values must be non-zero (pixels are divided by them)")
    for key in ("MODEL.RPN.BBOX_REG_WEIGHTS", "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS"):
        if len(_get(tree, key)) != 4:
            raise ConfigError(f"{key} must have 4 values (dx, dy, dw, dh), got {_get(tree, key)}")
    for head in ("RPN", "ROI_HEADS"):
        if len(_get(tree, f"MODEL.{head}.IOU_LABELS")) != len(_get(tree, f"MODEL.{head}.IOU_THRESHOLDS")) + 1:
            raise ConfigError(f"MODEL.{head}.IOU_LABELS must have one more entry than MODEL.{head}.IOU_THRESHOLDS")
    for key in ("MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"):
        _per_level(_get(tree, key), len(_get(tree, "MODEL.RPN.IN_FEATURES")), key)
    if int(_get(tree, "VERSION")) < 2:
        raise ConfigError("config VERSION < 2 (pre-2019 detectron2 layout) is not supported")


def _per_level(values: list[Any], levels: int, key: str) -> tuple[tuple[float, ...], ...]:
    """detectron2's _broadcast_params: a flat list is one set for every level; a list of lists
    has one set for all levels or one per level."""
    if not values:
        raise ConfigError(f"{key} must not be empty")
    if not isinstance(values[0], list):
        values = [values]
    if len(values) == 1:
        values = values * levels
    if len(values) != levels or not all(values):
        raise ConfigError(f"{key} must list one non-empty set for all RPN levels or one per level ({levels})")
    return tuple(tuple(float(x) for x in v) for v in values)


def model_config_from_tree(tree: dict[str, Any]) -> ModelConfig:
    """Build the typed model config from a merged detectron2 tree (validating it first)."""
    _validate_model(tree)
    m = tree["MODEL"]
    inp = tree["INPUT"]
    min_train = inp["MIN_SIZE_TRAIN"]
    resnets, fpn, rpn, roi, box, mask = (
        m["RESNETS"], m["FPN"], m["RPN"], m["ROI_HEADS"], m["ROI_BOX_HEAD"], m["ROI_MASK_HEAD"]
    )
    num_levels = len(rpn["IN_FEATURES"])
    return ModelConfig(
        input=InputConfig(
            format=inp["FORMAT"],
            min_size_test=int(inp["MIN_SIZE_TEST"]),
            max_size_test=int(inp["MAX_SIZE_TEST"]),
            min_size_train=tuple(int(s) for s in (min_train if isinstance(min_train, list) else [min_train])),
            max_size_train=int(inp["MAX_SIZE_TRAIN"]),
            min_size_train_sampling=inp["MIN_SIZE_TRAIN_SAMPLING"],
            random_flip=inp["RANDOM_FLIP"],
            mask_format=inp["MASK_FORMAT"],
        ),
        pixel_mean=tuple(float(v) for v in m["PIXEL_MEAN"]),
        pixel_std=tuple(float(v) for v in m["PIXEL_STD"]),
        resnet=ResNetConfig(
            depth=int(resnets["DEPTH"]),
            norm=resnets["NORM"],
            num_groups=int(resnets["NUM_GROUPS"]),
            width_per_group=int(resnets["WIDTH_PER_GROUP"]),
            stem_out_channels=int(resnets["STEM_OUT_CHANNELS"]),
            res2_out_channels=int(resnets["RES2_OUT_CHANNELS"]),
            stride_in_1x1=bool(resnets["STRIDE_IN_1X1"]),
            res5_dilation=int(resnets["RES5_DILATION"]),
            out_features=tuple(resnets["OUT_FEATURES"]),
            freeze_at=int(m["BACKBONE"]["FREEZE_AT"]),
        ),
        fpn=FPNConfig(
            in_features=tuple(fpn["IN_FEATURES"]),
            out_channels=int(fpn["OUT_CHANNELS"]),
            norm=fpn["NORM"],
            fuse_type=fpn["FUSE_TYPE"],
        ),
        anchors=AnchorConfig(
            sizes=_per_level(m["ANCHOR_GENERATOR"]["SIZES"], num_levels, "MODEL.ANCHOR_GENERATOR.SIZES"),
            aspect_ratios=_per_level(m["ANCHOR_GENERATOR"]["ASPECT_RATIOS"], num_levels,
                                     "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"),
            offset=float(m["ANCHOR_GENERATOR"]["OFFSET"]),
        ),
        rpn=RPNConfig(
            in_features=tuple(rpn["IN_FEATURES"]),
            conv_dim=int(rpn["CONV_DIMS"][0]),
            pre_nms_topk_test=int(rpn["PRE_NMS_TOPK_TEST"]),
            post_nms_topk_test=int(rpn["POST_NMS_TOPK_TEST"]),
            pre_nms_topk_train=int(rpn["PRE_NMS_TOPK_TRAIN"]),
            post_nms_topk_train=int(rpn["POST_NMS_TOPK_TRAIN"]),
            nms_thresh=float(rpn["NMS_THRESH"]),
            min_size=float(m["PROPOSAL_GENERATOR"]["MIN_SIZE"]),
            bbox_reg_weights=tuple(float(w) for w in rpn["BBOX_REG_WEIGHTS"]),
            iou_thresholds=tuple(float(t) for t in rpn["IOU_THRESHOLDS"]),
            iou_labels=tuple(int(t) for t in rpn["IOU_LABELS"]),
            batch_size_per_image=int(rpn["BATCH_SIZE_PER_IMAGE"]),
            positive_fraction=float(rpn["POSITIVE_FRACTION"]),
            bbox_reg_loss_type=rpn["BBOX_REG_LOSS_TYPE"],
            smooth_l1_beta=float(rpn["SMOOTH_L1_BETA"]),
            loss_weight=float(rpn["LOSS_WEIGHT"]),
            bbox_reg_loss_weight=float(rpn["BBOX_REG_LOSS_WEIGHT"]),
            boundary_thresh=int(rpn["BOUNDARY_THRESH"]),
        ),
        roi_heads=ROIHeadsConfig(
            num_classes=int(roi["NUM_CLASSES"]),
            in_features=tuple(roi["IN_FEATURES"]),
            score_thresh_test=float(roi["SCORE_THRESH_TEST"]),
            nms_thresh_test=float(roi["NMS_THRESH_TEST"]),
            detections_per_image=int(tree["TEST"]["DETECTIONS_PER_IMAGE"]),
            batch_size_per_image=int(roi["BATCH_SIZE_PER_IMAGE"]),
            positive_fraction=float(roi["POSITIVE_FRACTION"]),
            iou_thresholds=tuple(float(t) for t in roi["IOU_THRESHOLDS"]),
            iou_labels=tuple(int(t) for t in roi["IOU_LABELS"]),
            proposal_append_gt=bool(roi["PROPOSAL_APPEND_GT"]),
        ),
        box_head=BoxHeadConfig(
            pooler=_pooler(tree, "ROI_BOX_HEAD"),
            num_conv=int(box["NUM_CONV"]),
            conv_dim=int(box["CONV_DIM"]),
            num_fc=int(box["NUM_FC"]),
            fc_dim=int(box["FC_DIM"]),
            norm=box["NORM"],
            bbox_reg_weights=tuple(float(w) for w in box["BBOX_REG_WEIGHTS"]),
            cls_agnostic_bbox_reg=bool(box["CLS_AGNOSTIC_BBOX_REG"]),
            bbox_reg_loss_type=box["BBOX_REG_LOSS_TYPE"],
            smooth_l1_beta=float(box["SMOOTH_L1_BETA"]),
            bbox_reg_loss_weight=float(box["BBOX_REG_LOSS_WEIGHT"]),
        ),
        mask_head=MaskHeadConfig(
            pooler=_pooler(tree, "ROI_MASK_HEAD"),
            num_conv=int(mask["NUM_CONV"]),
            conv_dim=int(mask["CONV_DIM"]),
            norm=mask["NORM"],
            cls_agnostic_mask=bool(mask["CLS_AGNOSTIC_MASK"]),
        ),
    )
