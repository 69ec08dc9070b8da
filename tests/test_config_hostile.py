"""Config reading is bounded: hostile YAML, _BASE_ targets and wrong types end in one error line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostile.configs import ZOO_1X, ConfigCase, alias_bomb_text, hostile_config_cases
from instseg_deploy.config import config_from_tree, dump_tree, load_config
from instseg_deploy.config.loader import MAX_YAML_DEPTH, MAX_YAML_VALUES, tree_from_text
from instseg_deploy.errors import ConfigError

REPO = Path(__file__).parent.parent
CASES = hostile_config_cases()


def _needs(case: ConfigCase) -> str | None:
    """Why this machine cannot build the case, or None."""
    if "fifo" in case.name and not hasattr(os, "mkfifo"):
        return "no os.mkfifo on this platform"
    if case.name == "base_proc_symlink" and not Path("/proc/self/environ").exists():
        return "no /proc on this machine"
    if case.name == "base_dev_zero_symlink" and not Path("/dev/zero").exists():
        return "no /dev/zero on this machine"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_config_case(tmp_path, caplog, case):
    if (reason := _needs(case)) is not None:
        pytest.skip(reason)
    path = case.write(tmp_path)
    if case.outcome == "warning":
        with caplog.at_level(logging.WARNING, logger="instseg_deploy.config"):
            cfg = load_config(path)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and case.expect in warnings[0]
        assert case.expect in cfg.unknown_keys
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert case.expect in message
    assert "\n" not in message and "Traceback" not in message


def test_case_names_are_unique():
    assert len({c.name for c in CASES}) == len(CASES)


_CHILD = """
import json, resource, sys, time
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression dies here instead of eating the box
from instseg_deploy.config import load_config
from instseg_deploy.errors import ConfigError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_config(Path(sys.argv[1]))
    outcome = "loaded"
except ConfigError as e:
    outcome = str(e)
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start,
                  "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


@pytest.mark.parametrize("name", ["alias_bomb", "alias_bomb_in_base", "deep_flow_nesting"])
def test_alias_bomb_fails_fast_with_little_memory(tmp_path, name):
    """The 9**9-value "billion laughs" (the issue's 377-byte file grew past 5.6 GB): refused
    while reading events, in a child so that a regression cannot take pytest down with it."""
    case = next(c for c in CASES if c.name == name)
    path = case.write(tmp_path)
    assert path.stat().st_size < 16 * 1024  # a small file that would expand without bound
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert case.expect in report["outcome"]
    assert report["seconds"] < 2.0
    assert report["rss_growth_kib"] < 64 * 1024


def _on_zoo(tmp_path: Path, body: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f'_BASE_: "{ZOO_1X}"\n{body}', encoding="utf-8")
    return path


def test_aliases_within_the_budget_are_expanded_into_independent_copies(tmp_path):
    cfg = load_config(_on_zoo(tmp_path, 'DATASETS:\n  TRAIN: &sets ["a", "b"]\n  TEST: *sets\n'))
    train, test = cfg.raw["DATASETS"]["TRAIN"], cfg.raw["DATASETS"]["TEST"]
    assert train == test == ["a", "b"] and train is not test
    # 9**5 values through aliases is within the budget; one more level (9**6) is not.
    levels = ['l0: &l0 [0, 0, 0, 0, 0, 0, 0, 0, 0]'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]"
                                                          for i in range(1, 5)]
    cfg = load_config(_on_zoo(tmp_path, "MY_PROJECT:\n" + "".join(f"  {x}\n" for x in levels)))
    assert len(cfg.raw["MY_PROJECT"]["l4"]) == 9 and 9 ** 5 < MAX_YAML_VALUES < 9 ** 6
    levels.append(f"l5: &l5 [{', '.join(['*l4'] * 9)}]")
    with pytest.raises(ConfigError, match="aliases are expanded"):
        load_config(_on_zoo(tmp_path, "MY_PROJECT:\n" + "".join(f"  {x}\n" for x in levels)))


def test_merging_into_one_alias_of_a_base_leaves_the_others(tmp_path):
    (tmp_path / "base.yaml").write_text(f'_BASE_: "{ZOO_1X}"\nMY_A: &x {{K: 1, L: 2}}\nMY_B: *x\n')
    (tmp_path / "c.yaml").write_text('_BASE_: "base.yaml"\nMY_B:\n  K: 5\n')
    raw = load_config(tmp_path / "c.yaml").raw
    assert raw["MY_A"] == {"K": 1, "L": 2} and raw["MY_B"] == {"K": 5, "L": 2}


def test_nesting_limit_is_exact(tmp_path):
    # the top-level mapping is one level, MY_PROJECT's lists the rest
    ok = _on_zoo(tmp_path, "MY_PROJECT: " + "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1) + "\n", "ok.yaml")
    assert load_config(ok).unknown_keys == ("MY_PROJECT",)
    bad = _on_zoo(tmp_path, "MY_PROJECT: " + "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH + "\n", "bad.yaml")
    with pytest.raises(ConfigError, match="nested deeper than"):
        load_config(bad)


def test_base_may_be_a_yml_file_or_a_symlink_to_a_blob(tmp_path):
    """Only the name must be .yaml/.yml: a hub cache links config.yaml to a blob without one."""
    blob = tmp_path / "blobs" / "5f1c0ffee"
    blob.parent.mkdir()
    base = ZOO_1X.parent.parent / "Base-RCNN-FPN.yaml"
    blob.write_text(ZOO_1X.read_text().replace('"../Base-RCNN-FPN.yaml"', f'"{base}"'))
    (tmp_path / "zoo.yaml").symlink_to(blob)
    (tmp_path / "mine.yml").write_text('_BASE_: "zoo.yaml"\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3\n')
    (tmp_path / "top.yaml").write_text('_BASE_: "mine.yml"\n')
    cfg = load_config(tmp_path / "top.yaml")
    assert cfg.model.num_classes == 3 and cfg.model.resnet.depth == 50


def test_unknown_keys_are_reported_once_and_recorded(tmp_path, caplog):
    path = _on_zoo(tmp_path, "SOLVER:\n  MY_LR: 0.1\nMY_PROJECT:\n  FOO: 1\n")
    with caplog.at_level(logging.WARNING, logger="instseg_deploy.config"):
        cfg = load_config(path)
    assert cfg.unknown_keys == ("SOLVER.MY_LR", "MY_PROJECT")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "SOLVER.MY_LR, MY_PROJECT" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="instseg_deploy.config"):
        again = config_from_tree(cfg.raw, warn_unknown=False)
    assert again.unknown_keys == cfg.unknown_keys and not caplog.records


@pytest.mark.parametrize("body, fragment", [
    ("MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3.0\n", "MODEL.ROI_HEADS.NUM_CLASSES expects int, got float (3.0)"),
    ("MODEL:\n  PIXEL_MEAN: [1.0, 2.0]\n", "MODEL.PIXEL_MEAN must have 3 values"),
    ("MODEL:\n  PIXEL_STD: [1.0, 0, 1.0]\n", "MODEL.PIXEL_STD values must be non-zero"),
    ("MODEL:\n  RPN:\n    BBOX_REG_WEIGHTS: [1.0, 1.0]\n", "MODEL.RPN.BBOX_REG_WEIGHTS must have 4 values"),
    ("MODEL:\n  ROI_HEADS:\n    IOU_LABELS: [0, 1, 2]\n", "MODEL.ROI_HEADS.IOU_LABELS must have one more entry"),
    ("MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: [[32], 64]\n", "MODEL.ANCHOR_GENERATOR.SIZES expects a list of lists"),
    ("MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: [[32], [64]]\n", "MODEL.ANCHOR_GENERATOR.SIZES must list one"),
    ("MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: []\n", "MODEL.ANCHOR_GENERATOR.SIZES must not be empty"),
    ("INPUT:\n  MIN_SIZE_TRAIN: 800\n", "INPUT.MIN_SIZE_TRAIN expects list, got int (800)"),
    ("INPUT:\n  MIN_SIZE_TRAIN: [[800]]\n", "INPUT.MIN_SIZE_TRAIN expects a list of numbers, got an element of type"),
    ("MODEL:\n  RESNETS:\n    OUT_FEATURES: [res2, 3]\n", "expects a list of str, got an element of type int"),
    ("MODEL:\n  DEVICE: [cpu]\n", "MODEL.DEVICE expects str, got list"),
    ("MODEL:\n  WEIGHTS: null\n", "MODEL.WEIGHTS expects str, got None"),
    ("SOLVER:\n  BASE_LR: true\n", "SOLVER.BASE_LR expects float, got bool"),
    ("MY_PROJECT:\n  a-b: 1\n", "'MY_PROJECT.a-b' is not a config key name"),
])
def test_wrong_types_and_shapes_are_one_error_naming_the_key(tmp_path, body, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(_on_zoo(tmp_path, body))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_lenient_where_detectron2_is(tmp_path):
    """An int for a float key, a number for a string key, a flat anchor list broadcast to every
    level (detectron2's _broadcast_params), None where the default is None."""
    cfg = load_config(_on_zoo(tmp_path, "MODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0\n"
                                        "  ANCHOR_GENERATOR:\n    SIZES: [32, 64]\nOUTPUT_DIR: 2024\n"
                                        "SOLVER:\n  WEIGHT_DECAY_BIAS: 0.0\n"))
    assert cfg.model.roi_heads.score_thresh_test == 0.0 and isinstance(cfg.raw["MODEL"]["ROI_HEADS"]
                                                                       ["SCORE_THRESH_TEST"], float)
    assert cfg.model.anchors.sizes == ((32.0, 64.0),) * 5
    assert cfg.raw["OUTPUT_DIR"] == "2024" and cfg.raw["SOLVER"]["WEIGHT_DECAY_BIAS"] == 0.0


def _shared_bomb() -> list:
    """A pickle can share one list like a YAML alias: 9**9 values in 10 objects."""
    node: list = ["lol"] * 9
    for _ in range(8):
        node = [node] * 9
    return node


def _nested(levels: int) -> list:
    node: list = [1]
    for _ in range(levels - 1):
        node = [node]
    return node


def _recursive() -> list:
    node: list = []
    node.append(node)
    return node


@pytest.mark.parametrize("tree, fragment", [
    ({"MY_PROJECT": _shared_bomb()}, "expands to more than"),
    ({"MY_PROJECT": _recursive()}, "contains itself"),
    ({"MY_PROJECT": {"a": _nested(MAX_YAML_DEPTH)}}, "nested deeper"),
    ([1, 2], "expected a mapping of config keys"),
    ({"_BASE_": "x.yaml"}, "cannot have a _BASE_"),
    ({1: 2}, "is not a string"),
    ({"MODEL": {"ROI_HEADS": {"NUM_CLASSES": "three"}}}, "MODEL.ROI_HEADS.NUM_CLASSES expects int"),
    ({"MY_PROJECT": {"when": __import__("datetime").date(2024, 1, 1)}}, "values of type date are not allowed"),
    ({"MY_PROJECT": object()}, "values of type object are not allowed"),
])
def test_hostile_trees_from_checkpoints(tree, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        config_from_tree(tree, source="ckpt.pth (embedded)")


def test_stored_config_text_is_read_with_the_same_limits():
    cfg = load_config(ZOO_1X)
    again = config_from_tree(tree_from_text(dump_tree(cfg.raw), "model.onnx"), source="model.onnx")
    assert again.model == cfg.model and again.raw == cfg.raw
    with pytest.raises(ConfigError, match="aliases are expanded"):
        tree_from_text(alias_bomb_text(), "model.onnx")
    with pytest.raises(ConfigError, match="cannot have a _BASE_"):
        tree_from_text('_BASE_: "/etc/x.yaml"\n', "model.onnx")
    with pytest.raises(ConfigError, match="YAML tag"):
        tree_from_text("SEED: !!python/object/apply:os.getpid []\n", "model.onnx")

