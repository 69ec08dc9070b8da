"""Hostile detectron2 config files, generated at test time.

:func:`hostile_config_cases` returns one :class:`ConfigCase` per attack or mistake: ``write``
builds the case's files in a folder and returns the path to load (``load_config`` or
``instseg ... --config``); ``expect`` is a fragment of the one-line error, or, for
``outcome == "warning"``, of the warning logged while the config still loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
ZOO_1X = REPO / "configs" / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_1x.yaml"


class ConfigCase(NamedTuple):
    name: str
    write: Callable[[Path], Path]  # folder -> the config file to load
    expect: str  # fragment of the error line (or of the warning)
    outcome: str = "error"  # "error" or "warning"


def _text(body: str, name: str = "config.yaml") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_text(body, encoding="utf-8")
        return path
    return write


def _bytes(body: bytes, name: str = "config.yaml") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(body)
        return path
    return write


def _on_zoo(body: str) -> Callable[[Path], Path]:
    """A model-zoo file (valid on its own) with ``body`` on top."""
    return _text(f'_BASE_: "{ZOO_1X}"\n{body}')


def alias_bomb_text(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level lists the previous one ``width`` times (9**9 values)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _with_base(base_writer: Callable[[Path], Path]) -> Callable[[Path], Path]:
    """A config whose _BASE_ is what ``base_writer`` makes (named relative to the config)."""
    def write(folder: Path) -> Path:
        base = base_writer(folder)
        path = folder / "config.yaml"
        path.write_text(f'_BASE_: "{base.name}"\nMODEL:\n  MASK_ON: true\n', encoding="utf-8")
        return path
    return write


def _symlink(target: str, name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        link = folder / name
        link.symlink_to(target)
        return link
    return write


def _fifo(name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        os.mkfifo(path)
        return path
    return write


def _cycle(folder: Path) -> Path:
    (folder / "a.yaml").write_text('_BASE_: "b.yaml"\n', encoding="utf-8")
    (folder / "b.yaml").write_text('_BASE_: "c.yaml"\n', encoding="utf-8")
    (folder / "c.yaml").write_text('_BASE_: "a.yaml"\n', encoding="utf-8")
    return folder / "a.yaml"


def _huge(name: str, size: int) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        with open(path, "wb") as f:
            f.write(b"MODEL:\n  MASK_ON: true\n# ")
            f.truncate(size)  # sparse: costs no disk
        return path
    return write


def _symlink_loop(folder: Path) -> Path:
    (folder / "a.yaml").symlink_to(folder / "b.yaml")
    (folder / "b.yaml").symlink_to(folder / "a.yaml")
    return folder / "a.yaml"


def _directory(folder: Path) -> Path:
    path = folder / "dir.yaml"
    path.mkdir()
    return path


def hostile_config_cases() -> list[ConfigCase]:
    """Every hostile config case; each needs its own empty folder."""
    deep = "MY_PROJECT: " + "[" * 5000 + "]" * 5000 + "\n"
    deep_block = "MY_PROJECT:\n" + "".join(f"{'  ' * (i + 1)}K{i}:\n" for i in range(40)) + "  " * 41 + "V: 1\n"
    return [
        ConfigCase("alias_bomb", _text(alias_bomb_text()), "YAML values once aliases are expanded"),
        ConfigCase("alias_bomb_in_base", _with_base(_text(alias_bomb_text(), "bomb.yaml")),
                   "YAML values once aliases are expanded"),
        ConfigCase("recursive_alias", _text("MY_PROJECT: &a [1, *a]\n"), "recursive YAML alias"),
        ConfigCase("deep_flow_nesting", _text(deep), "nested deeper than"),
        ConfigCase("deep_block_nesting", _text(deep_block), "nested deeper than"),
        ConfigCase("base_etc_shadow", _text('_BASE_: "/etc/shadow"\n'), "must name a .yaml or .yml file"),
        ConfigCase("base_etc_passwd_relative", _text('_BASE_: "../../../../../../../../etc/passwd"\n'),
                   "must name a .yaml or .yml file"),
        ConfigCase("base_dev_zero", _text('_BASE_: "/dev/zero"\n'), "must name a .yaml or .yml file"),
        ConfigCase("base_dev_zero_symlink", _with_base(_symlink("/dev/zero", "zero.yaml")), "under /dev"),
        ConfigCase("base_proc_symlink", _with_base(_symlink("/proc/self/environ", "environ.yaml")), "under /proc"),
        ConfigCase("base_fifo", _with_base(_fifo("fifo.yaml")), "is a FIFO, not a regular file"),
        ConfigCase("config_is_fifo", _fifo("config.yaml"), "is a FIFO, not a regular file"),
        ConfigCase("config_is_directory", _directory, "is a directory, not a regular file"),
        ConfigCase("symlink_loop", _symlink_loop, "cannot read config file"),
        ConfigCase("base_url", _text('_BASE_: "https://example.com/Base-RCNN-FPN.yaml"\n'), "is a URL"),
        ConfigCase("base_not_a_string", _text("_BASE_: [a.yaml, b.yaml]\n"), "_BASE_ must be a path string"),
        ConfigCase("base_missing", _text('_BASE_: "nope.yaml"\n'), "config file not found"),
        ConfigCase("base_cycle", _cycle, "_BASE_ cycle"),
        ConfigCase("base_self_cycle", _text('_BASE_: "config.yaml"\n'), "_BASE_ cycle"),
        ConfigCase("huge_file", _huge("config.yaml", 64 << 20), "larger than 1 MiB"),
        ConfigCase("huge_base", _with_base(_huge("huge.yaml", 64 << 20)), "larger than 1 MiB"),
        ConfigCase("top_level_list", _text("- MODEL\n- SOLVER\n"), "expected a mapping of config keys"),
        ConfigCase("top_level_string", _text("just some text\n"), "expected a mapping of config keys"),
        ConfigCase("shadow_like_lines", _text("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"),
                   "is not a config key name"),
        ConfigCase("non_string_key", _text("MODEL:\n  MASK_ON: true\n1: 2\n"), "is not a string"),
        ConfigCase("invalid_yaml", _text("MODEL: [unclosed\n"), "not valid YAML"),
        ConfigCase("huge_int", _on_zoo("SEED: " + "9" * 5000 + "\n"), "not valid YAML"),
        ConfigCase("wrong_type_model_int", _on_zoo("MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: three\n"),
                   "MODEL.ROI_HEADS.NUM_CLASSES expects int, got str"),
        ConfigCase("wrong_type_model_bool", _on_zoo("MODEL:\n  MASK_ON: 1\n"), "MODEL.MASK_ON expects bool, got int"),
        ConfigCase("wrong_type_model_float", _on_zoo("MODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: [0.5]\n"),
                   "MODEL.ROI_HEADS.SCORE_THRESH_TEST expects float, got list"),
        ConfigCase("wrong_type_list_element", _on_zoo("MODEL:\n  PIXEL_MEAN: [a, b, c]\n"),
                   "MODEL.PIXEL_MEAN expects a list of numbers, got an element of type str"),
        ConfigCase("wrong_type_section", _on_zoo("MODEL:\n  RESNETS: 50\n"), "MODEL.RESNETS is a section"),
        ConfigCase("wrong_type_solver", _on_zoo("SOLVER:\n  MAX_ITER: lots\n"), "SOLVER.MAX_ITER expects int, got str"),
        ConfigCase("timestamp_value", _on_zoo("OUTPUT_DIR: 2024-01-01\n"), "values of type date are not allowed"),
        ConfigCase("unknown_model_key", _on_zoo("MODEL:\n  ROI_HEADS:\n    NUM_CLASSSES: 3\n"),
                   "unknown config key MODEL.ROI_HEADS.NUM_CLASSSES (did you mean MODEL.ROI_HEADS.NUM_CLASSES?)"),
        ConfigCase("unknown_solver_key", _on_zoo("SOLVER:\n  MY_LR: 0.1\n"), "SOLVER.MY_LR", outcome="warning"),
        ConfigCase("non_utf8", _bytes(b"MODEL:\n  WEIGHTS: \xff\xfe\xfa.pkl\n"), "not UTF-8 text"),
        ConfigCase("python_object_tag", _on_zoo("MODEL: !!python/object/apply:os.system [\"echo pwned\"]\n"),
                   "YAML tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"),
        ConfigCase("python_name_tag_in_base", _with_base(_text("SEED: !!python/name:os.system\n", "b.yaml")),
                   "is not allowed"),
        ConfigCase("binary_tag", _on_zoo("OUTPUT_DIR: !!binary aGVsbG8=\n"), "YAML tag tag:yaml.org,2002:binary"),
        ConfigCase("custom_tag", _on_zoo("SEED: !env HOME\n"), "YAML tag !env is not allowed"),
        # configs that would build and then silently find nothing
        ConfigCase("score_thresh_one", _on_zoo("MODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 1.0\n"),
                   "SCORE_THRESH_TEST 1.0 is outside [0.0, 1.0)"),
        ConfigCase("no_detections_per_image", _on_zoo("TEST:\n  DETECTIONS_PER_IMAGE: 0\n"),
                   "TEST.DETECTIONS_PER_IMAGE 0 is outside"),
        ConfigCase("nms_thresh_above_one", _on_zoo("MODEL:\n  ROI_HEADS:\n    NMS_THRESH_TEST: 1.5\n"),
                   "NMS_THRESH_TEST 1.5 is outside"),
        ConfigCase("no_proposals", _on_zoo("MODEL:\n  RPN:\n    POST_NMS_TOPK_TEST: 0\n"), "POST_NMS_TOPK_TEST 0"),
    ]
