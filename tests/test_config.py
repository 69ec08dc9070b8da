"""detectron2 YAML configs are read without detectron2, with its semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from instseg_deploy.config import load_config
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import ConfigError
from instseg_deploy.modeling import build_model

REPO = Path(__file__).parent.parent
ZOO = REPO / "configs" / "COCO-InstanceSegmentation"


def test_model_zoo_config_with_base_and_tuple_strings():
    cfg = load_config(ZOO / "mask_rcnn_R_50_FPN_3x.yaml")
    m = cfg.model
    assert m.resnet.depth == 50 and m.resnet.norm == "FrozenBN" and m.resnet.res2_out_channels == 256
    assert m.num_classes == 80 and m.box_head.fc_dim == 1024 and m.box_head.num_fc == 2
    assert m.anchors.sizes == ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,))
    assert m.rpn.pre_nms_topk_test == 1000 and m.rpn.post_nms_topk_test == 1000
    assert m.input.min_size_test == 800 and m.input.max_size_test == 1333
    assert m.input.min_size_train == (640, 672, 704, 736, 768, 800)  # from a "(640, ...)" string
    # training keys survive for later use
    assert cfg.raw["SOLVER"]["STEPS"] == [210000, 250000] and cfg.raw["SOLVER"]["MAX_ITER"] == 270000
    assert cfg.raw["DATASETS"]["TRAIN"] == ["coco_2017_train"]


def test_r101_and_1x_configs():
    assert load_config(ZOO / "mask_rcnn_R_101_FPN_3x.yaml").model.resnet.depth == 101
    assert load_config(ZOO / "mask_rcnn_R_50_FPN_1x.yaml").raw["SOLVER"]["MAX_ITER"] == 90000


def test_full_dump_config(d2_dir):
    cfg = load_config(DEMO_DATA / "shapes_r50" / "config.yaml")
    m = cfg.model
    assert (m.resnet.width_per_group, m.resnet.res2_out_channels, m.resnet.norm) == (16, 64, "BN")
    assert m.fpn.out_channels == 64 and m.num_classes == 4 and m.mask_head.conv_dim == 64
    assert (m.input.min_size_test, m.input.max_size_test, m.input.format) == (320, 512, "BGR")


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_resnet_depths_build(tmp_path, depth):
    res2 = 64 if depth < 50 else 256
    path = tmp_path / "c.yaml"
    path.write_text(f'_BASE_: "{ZOO / "mask_rcnn_R_50_FPN_1x.yaml"}"\nMODEL:\n  RESNETS:\n    DEPTH: {depth}\n'
                    f"    RES2_OUT_CHANNELS: {res2}\n    WIDTH_PER_GROUP: 8\n  FPN:\n    OUT_CHANNELS: 32\n")
    model = build_model(load_config(path).model)
    blocks = {18: 8, 34: 16, 50: 16, 101: 33}[depth]
    assert sum(len(getattr(model.backbone.bottom_up, f"res{i}")) for i in range(2, 6)) == blocks


@pytest.mark.parametrize("override, key", [
    ("MODEL:\n  META_ARCHITECTURE: RetinaNet\n", "MODEL.META_ARCHITECTURE"),
    ("MODEL:\n  RESNETS:\n    DEFORM_ON_PER_STAGE: [false, true, true, true]\n", "MODEL.RESNETS.DEFORM_ON_PER_STAGE"),
    ("MODEL:\n  ROI_HEADS:\n    NAME: CascadeROIHeads\n", "MODEL.ROI_HEADS.NAME"),
    ("MODEL:\n  ROI_BOX_HEAD:\n    POOLER_TYPE: ROIPool\n", "MODEL.ROI_BOX_HEAD.POOLER_TYPE"),
    ("MODEL:\n  MASK_ON: false\n", "MODEL.MASK_ON"),
    ("MODEL:\n  RESNETS:\n    NORM: LN\n", "MODEL.RESNETS.NORM"),
    ("MODEL:\n  MY_NEW_HEAD:\n    DIM: 3\n", "MODEL.MY_NEW_HEAD"),
])
def test_unsupported_model_keys_are_named(tmp_path, override, key):
    path = tmp_path / "c.yaml"
    path.write_text(f'_BASE_: "{ZOO / "mask_rcnn_R_50_FPN_1x.yaml"}"\n{override}')
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)


def test_unknown_non_model_keys_are_kept(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f'_BASE_: "{ZOO / "mask_rcnn_R_50_FPN_1x.yaml"}"\n'
                    "MY_PROJECT:\n  FOO: 1\nTEST:\n  EVAL_PERIOD: 5000\n")
    cfg = load_config(path)
    assert cfg.raw["MY_PROJECT"] == {"FOO": 1} and cfg.raw["TEST"]["EVAL_PERIOD"] == 5000


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text('_BASE_: "loop.yaml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)
