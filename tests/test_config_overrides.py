"""detectron2's trailing KEY VALUE overrides (yacs' merge_from_list), applied after _BASE_ merging."""

from __future__ import annotations

from pathlib import Path

import pytest

from instseg_deploy.config import (
    apply_overrides,
    config_from_tree,
    load_config,
    looks_like_override_key,
    split_overrides,
)
from instseg_deploy.config.loader import default_tree
from instseg_deploy.config.overrides import DETECTRON2_ROOTS
from instseg_deploy.errors import ConfigError

ZOO = Path(__file__).parent.parent / "configs" / "COCO-InstanceSegmentation"
ZOO_1X = ZOO / "mask_rcnn_R_50_FPN_1x.yaml"

# (override key, command-line text, the same value written in YAML)
SAME_VALUES = [
    ("MODEL.WEIGHTS", "/models/model_final.pth", "/models/model_final.pth"),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.7", "0.7"),
    ("MODEL.ROI_HEADS.NUM_CLASSES", "3", "3"),
    ("MODEL.RESNETS.DEPTH", "101", "101"),
    ("MODEL.RESNETS.STRIDE_IN_1X1", "False", "false"),
    ("MODEL.PIXEL_STD", "[57.375, 57.12, 58.395]", "[57.375, 57.12, 58.395]"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128], [256]]", "[[16], [32], [64], [128], [256]]"),
    ("INPUT.MIN_SIZE_TRAIN", "(512, 640)", '"(512, 640)"'),
    ("INPUT.FORMAT", "RGB", "RGB"),
    ("DATASETS.TRAIN", "('my_train',)", "(\"my_train\",)"),
    ("SOLVER.IMS_PER_BATCH", "2", "2"),
    ("SOLVER.BASE_LR", "1e-3", "0.001"),
    ("SOLVER.STEPS", "(100, 200)", "[100, 200]"),
    ("OUTPUT_DIR", "./runs/a", "./runs/a"),
    ("SEED", "-1", "-1"),
]


def _yaml_with(values: list[tuple[str, str, str]]) -> str:
    """The values written as nested YAML mappings (what a _BASE_-inheriting file would say)."""
    tree: dict = {}
    for key, _, text in values:
        *sections, leaf = key.split(".")
        node = tree
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = text

    def lines(node: dict, indent: int) -> list[str]:
        out = []
        for k, v in node.items():
            out += [f"{'  ' * indent}{k}:", *lines(v, indent + 1)] if isinstance(v, dict) else \
                [f"{'  ' * indent}{k}: {v}"]
        return out

    return "\n".join(lines(tree, 0)) + "\n"


def test_overrides_equal_the_same_values_written_into_an_inheriting_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(f'_BASE_: "{ZOO_1X}"\n' + _yaml_with(SAME_VALUES))
    from_yaml = load_config(path)
    overrides = [x for key, text, _ in SAME_VALUES for x in (key, text)]
    from_cli = load_config(ZOO_1X, overrides)
    assert from_cli.model == from_yaml.model and from_cli.raw == from_yaml.raw
    assert from_cli.model.resnet.depth == 101 and from_cli.model.roi_heads.score_thresh_test == 0.7
    assert from_cli.model.input.min_size_train == (512, 640) and from_cli.raw["DATASETS"]["TRAIN"] == ["my_train"]
    assert from_cli.raw["SOLVER"]["BASE_LR"] == 0.001 and from_cli.raw["SOLVER"]["IMS_PER_BATCH"] == 2
    assert from_cli.weights == "/models/model_final.pth" and from_cli.overrides == tuple(overrides)
    assert from_yaml.overrides == () and load_config(ZOO_1X).model != from_cli.model


def test_overrides_apply_after_base_merging_and_on_top_of_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(f'_BASE_: "{ZOO_1X}"\nMODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0.3\n')
    assert load_config(path).model.roi_heads.score_thresh_test == 0.3
    cfg = load_config(path, ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.9", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.8"])
    assert cfg.model.roi_heads.score_thresh_test == 0.8  # in order, the last one wins (yacs)
    # the model part is validated after the overrides
    with pytest.raises(ConfigError, match="MODEL.META_ARCHITECTURE"):
        load_config(path, ["MODEL.META_ARCHITECTURE", "RetinaNet"])


def test_weights_default_to_model_weights():
    assert load_config(ZOO_1X).weights == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    assert load_config(ZOO_1X, ["MODEL.WEIGHTS", "w.pth"]).weights == "w.pth"
    assert load_config(ZOO_1X, ["MODEL.WEIGHTS", ""]).weights == ""


@pytest.mark.parametrize("key, text, stored", [
    ("INPUT.MIN_SIZE_TRAIN", "(640, 800)", [640, 800]),  # tuple -> list
    ("INPUT.MIN_SIZE_TRAIN", "[640]", [640]),
    ("SOLVER.STEPS", "(1000,)", [1000]),
    ("DATASETS.TEST", "('a', 'b')", ["a", "b"]),
    ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[0.5, 1, 2]]", [[0.5, 1, 2]]),
    ("SOLVER.BASE_LR", "0.02", 0.02),
    ("SOLVER.BASE_LR", "1e-3", 0.001),
    ("SOLVER.BASE_LR", "1", 1.0),  # an int for a float key
    ("SOLVER.MAX_ITER", "90000", 90000),
    ("SEED", "-1", -1),
    ("MODEL.MASK_ON", "True", True),
    ("MODEL.WEIGHTS", "/x/model_final.pth", "/x/model_final.pth"),  # not a literal: stays a string
    ("MODEL.WEIGHTS", "'quoted.pth'", "quoted.pth"),  # a string literal
    ("MODEL.WEIGHTS", "123", "123"),  # a number for a string key is text, as written
    ("MODEL.WEIGHTS", "1e-3", "1e-3"),
    ("MODEL.DEVICE", "cpu", "cpu"),
    ("MODEL.DEVICE", "['cpu']", "['cpu']"),  # for a string key any text is kept as written
    ("SOLVER.WEIGHT_DECAY_BIAS", "0.0", 0.0),  # the default is None: anything goes
    ("SOLVER.WEIGHT_DECAY_BIAS", "None", None),
])
def test_values_are_literal_evaluated_and_coerced_like_yacs(key, text, stored):
    tree = default_tree()
    assert apply_overrides(tree, [key, text]) == (key, text)
    node = tree
    for part in key.split("."):
        node = node[part]
    assert node == stored and type(node) is type(stored)


def test_non_string_values_are_recorded_so_that_reapplying_gives_the_same_tree():
    tree = default_tree()
    record = apply_overrides(tree, ["SOLVER.BASE_LR", 0.5, "INPUT.MIN_SIZE_TRAIN", (320, 480), "MODEL.DEVICE", "cpu"])
    assert record == ("SOLVER.BASE_LR", "0.5", "INPUT.MIN_SIZE_TRAIN", "(320, 480)", "MODEL.DEVICE", "cpu")
    again = default_tree()
    apply_overrides(again, record)
    assert again == tree and tree["INPUT"]["MIN_SIZE_TRAIN"] == [320, 480]


@pytest.mark.parametrize("overrides, fragment", [
    (["MODEL.ROI_HEADS.SCORE_THRESH", "0.5"],
     "unknown config key MODEL.ROI_HEADS.SCORE_THRESH (did you mean MODEL.ROI_HEADS.SCORE_THRESH_TEST?)"),
    (["MODEL.WEIGHT", "w.pth"], "unknown config key MODEL.WEIGHT (did you mean MODEL.WEIGHTS?)"),
    (["SOLVER.MY_LR", "0.1"], "unknown config key SOLVER.MY_LR"),  # unlike YAML, overrides add no keys
    (["MODEL.WEIGHTS.X", "1"], "unknown config key MODEL.WEIGHTS.X: MODEL.WEIGHTS is a value, not a section"),
    (["MODEL.RESNETS", "{'DEPTH': 101}"], "config key MODEL.RESNETS is a section"),
    (["", "1"], "is not a config key"),
    (["MODEL.ROI_HEADS.NUM_CLASSES", "three"], "config key MODEL.ROI_HEADS.NUM_CLASSES expects int, got str ('three')"),
    (["MODEL.ROI_HEADS.NUM_CLASSES", "3.5"], "MODEL.ROI_HEADS.NUM_CLASSES expects int, got float (3.5)"),
    (["MODEL.MASK_ON", "1"], "MODEL.MASK_ON expects bool, got int (1)"),
    (["SOLVER.BASE_LR", "fast"], "SOLVER.BASE_LR expects float, got str ('fast')"),
    (["SOLVER.STEPS", "1000"], "SOLVER.STEPS expects list, got int (1000)"),
    (["SOLVER.STEPS", "(1000, 'x')"], "SOLVER.STEPS expects a list of numbers, got an element of type str ('x')"),
    (["DATASETS.TRAIN", "coco_2017_train"], "DATASETS.TRAIN expects list, got str ('coco_2017_train')"),
    (["MODEL.PIXEL_MEAN", "[1, 2]"], "MODEL.PIXEL_MEAN must have 3 values"),
    (["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS.X", "1"], "unknown config key MODEL.WEIGHTS.X"),
    (["SEED", "1j"], "config key SEED: values of type complex are not allowed"),  # only yacs' value types
    (["MODEL.WEIGHTS"], "KEY VALUE pairs; got 1 items, an odd number"),
    (["MODEL.WEIGHTS", "w.pth", "SEED"], "got 3 items, an odd number (the last is 'SEED')"),
])
def test_bad_overrides_are_one_error_naming_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(ZOO_1X, overrides)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_an_override_may_set_a_key_the_file_added(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(f'_BASE_: "{ZOO_1X}"\nMY_PROJECT:\n  FOO: 1\n')
    cfg = load_config(path, ["MY_PROJECT.FOO", "2"])
    assert cfg.raw["MY_PROJECT"]["FOO"] == 2
    with pytest.raises(ConfigError, match="MY_PROJECT.FOO expects int"):
        load_config(path, ["MY_PROJECT.FOO", "two"])


def test_overrides_on_an_embedded_tree():
    """A checkpoint's own config with the command line on top (no --config)."""
    cfg = load_config(ZOO_1X)
    again = config_from_tree(cfg.raw, source="w.pth (embedded)", overrides=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.6"])
    assert again.model.roi_heads.score_thresh_test == 0.6 and cfg.model.roi_heads.score_thresh_test == 0.05
    assert again.overrides == ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.6")


def test_roots_are_detectron2s_top_level_keys():
    assert set(default_tree()) == DETECTRON2_ROOTS


@pytest.mark.parametrize("word", [
    "MODEL.WEIGHTS", "SOLVER.IMS_PER_BATCH", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "SEED", "OUTPUT_DIR",
    "INPUT.MIN_SIZE_TEST", "TEST.DETECTIONS_PER_IMAGE", "MODEL.RESNETS.RES2_OUT_CHANNELS",
])
def test_key_shaped_words(word):
    assert looks_like_override_key(word)


@pytest.mark.parametrize("word", [
    "image.jpg", "IMG_0001.JPG", "TEST.JPG", "TEST.PNG", "MODEL.YAML", "./MODEL.WEIGHTS", "/data/MODEL.WEIGHTS",
    "model.weights", "Model.Weights", "MODEL.", ".MODEL", "MODEL..WEIGHTS", "", "-1", "0.5", "w.pth",
    "MY_PROJECT.FOO", "--", "MODEL.WEIGHTS=w.pth", "DATASETS/TRAIN",
])
def test_words_that_are_not_keys(word):
    assert not looks_like_override_key(word)


def test_custom_roots():
    assert looks_like_override_key("MY_PROJECT.FOO", roots=DETECTRON2_ROOTS | {"MY_PROJECT"})


def test_split_paths_and_overrides():
    args = ["a.jpg", "MODEL.WEIGHTS", "w.pth", "IMG_0001.JPG", "SOLVER.IMS_PER_BATCH", "2", "MODEL.PIXEL_MEAN",
            "[1, 2, 3]", "SEED", "-1", "dir/"]
    assert split_overrides(args) == (
        ["a.jpg", "IMG_0001.JPG", "dir/"],
        ["MODEL.WEIGHTS", "w.pth", "SOLVER.IMS_PER_BATCH", "2", "MODEL.PIXEL_MEAN", "[1, 2, 3]", "SEED", "-1"],
    )
    # after --, everything is a path, even key-shaped words
    assert split_overrides(["MODEL.WEIGHTS", "w.pth", "--", "MODEL.WEIGHTS", "SEED"]) == (
        ["MODEL.WEIGHTS", "SEED"], ["MODEL.WEIGHTS", "w.pth"])
    assert split_overrides([]) == ([], []) and split_overrides(["--"]) == ([], [])
    # the value is taken as written, even when it looks like a path or an option
    assert split_overrides(["MODEL.WEIGHTS", "--weights"]) == ([], ["MODEL.WEIGHTS", "--weights"])


@pytest.mark.parametrize("args, fragment", [
    (["a.jpg", "MODEL.WEIGHTS"], "config override MODEL.WEIGHTS has no value"),
    (["MODEL.WEIGHTS", "--", "a.jpg"], "config override MODEL.WEIGHTS has no value"),
    (["MODEL.WEIGHTS", "SOLVER.IMS_PER_BATCH", "2"], "the word after it, SOLVER.IMS_PER_BATCH, is a config key"),
])
def test_split_errors(args, fragment):
    with pytest.raises(ConfigError, match=fragment):
        split_overrides(args)


def test_split_then_load():
    paths, overrides = split_overrides(["x.jpg", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.5", "y.png"])
    cfg = load_config(ZOO_1X, overrides)
    assert paths == ["x.jpg", "y.png"] and cfg.model.roi_heads.score_thresh_test == 0.5
