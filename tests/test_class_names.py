"""One source of class names: the same names in torch, in an exported model and in its metadata."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from typer.testing import CliRunner

from instseg_deploy.checkpoint.loader import checkpoint_class_names, read_checkpoint
from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.class_names import COCO_CLASSES, parse_class_names, resolve_class_names
from instseg_deploy.cli.main import app
from instseg_deploy.config import load_config
from instseg_deploy.data.coco import load_coco_dataset
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import ConfigError
from instseg_deploy.export.onnx_export import export_onnx
from instseg_deploy.model_file.reader import read_model_metadata
from instseg_deploy.modeling import build_model
from instseg_deploy.runtime.factory import load_predictor
from instseg_deploy.runtime.torch_model import load_model

MODEL_DIR = DEMO_DATA / "shapes_r50"
PLACEHOLDERS = ("class_0", "class_1", "class_2", "class_3")


def _val_names() -> tuple[str, ...]:
    return load_coco_dataset(DEMO_DATA / "shapes_val" / "images", DEMO_DATA / "shapes_val" / "annotations.json",
                             check_files=False).class_names


def test_given_over_carried_over_dataset_over_defaults():
    given, carried, dataset = ("g0", "g1"), ("c0", "c1"), ("d0", "d1")
    assert resolve_class_names(2, given, carried, dataset) == given
    assert resolve_class_names(2, None, carried, dataset) == carried
    assert resolve_class_names(2, None, None, dataset) == dataset
    assert resolve_class_names(2) == ("class_0", "class_1")
    assert resolve_class_names(80) == COCO_CLASSES
    # Names a file carries that are only the defaults (written before it had names) count as none.
    assert resolve_class_names(4, carried=PLACEHOLDERS, dataset=_val_names()) == _val_names()


def test_given_names_must_fit_the_model(tmp_path):
    with pytest.raises(ConfigError, match="got 3 class names but the model has 2 classes"):
        resolve_class_names(2, given=("a", "b", "c"))
    names = tmp_path / "names.txt"
    names.write_text("cat\n\ndog\n", encoding="utf-8")
    assert parse_class_names(str(names), 2) == ("cat", "dog") == parse_class_names(" cat, dog ,", 2)


def test_miscounted_carried_names_are_reported_and_skipped(caplog):
    with caplog.at_level(logging.WARNING, logger="instseg_deploy.class_names"):
        assert resolve_class_names(2, carried=("a", "b", "c"), dataset=("x", "y")) == ("x", "y")
    assert "ignoring the model's 3 class names: it has 2 classes" in caplog.text


def test_bundled_model_has_the_dataset_names_in_torch_and_onnx(tmp_path, fixture_model):
    torch_predictor = load_predictor("torch", config=MODEL_DIR / "config.yaml", weights=MODEL_DIR / "model_final.pkl")
    assert torch_predictor.class_names == _val_names() == ("disc", "square", "triangle", "ring")
    model, cfg = fixture_model
    path = export_onnx(model, cfg, tmp_path / "model.onnx").path
    assert read_model_metadata(path)["class_names"] == list(_val_names())
    assert load_predictor("ort", model=path).class_names == torch_predictor.class_names


def test_bundled_pkl_is_still_a_detectron2_checkpoint():
    ckpt = read_checkpoint(MODEL_DIR / "model_final.pkl")
    assert ckpt.kind == "detectron2-pkl" and ckpt.extra["__author__"] == "Detectron2 Model Zoo"
    assert checkpoint_class_names(ckpt) == _val_names()


def test_nameless_detectron2_checkpoint_gets_defaults_or_the_users_names(tmp_path):
    with open(MODEL_DIR / "model_final.pkl", "rb") as f:
        data = pickle.load(f)  # a trusted fixture
    del data["class_names"]
    nameless = tmp_path / "nameless.pkl"
    nameless.write_bytes(pickle.dumps(data, protocol=4))
    assert load_model(MODEL_DIR / "config.yaml", nameless)[1].class_names == PLACEHOLDERS
    named = ("a", "b", "c", "d")
    assert load_model(MODEL_DIR / "config.yaml", nameless, class_names=named)[1].class_names == named
    with pytest.raises(ConfigError, match="got 2 class names"):
        load_model(MODEL_DIR / "config.yaml", nameless, class_names=("a", "b"))


def test_names_carried_by_our_checkpoints_and_by_a_named_detectron2_pth(tmp_path):
    net = torch.nn.Linear(2, 2)
    ours = tmp_path / "ours.pth"
    save_checkpoint(ours, net, {}, ("a", "b"))
    assert checkpoint_class_names(read_checkpoint(ours)) == ("a", "b")
    theirs = tmp_path / "theirs.pth"
    torch.save({"model": net.state_dict(), "class_names": ["x", "y"]}, theirs)
    assert checkpoint_class_names(read_checkpoint(theirs)) == ("x", "y")
    torch.save({"model": net.state_dict(), "class_names": [1, 2]}, theirs)  # not names
    assert checkpoint_class_names(read_checkpoint(theirs)) is None


@pytest.fixture(scope="module")
def tiny_nameless_weights(tmp_path_factory, tiny_config_path):
    cfg = load_config(tiny_config_path)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model.pth"
    torch.save({"model": build_model(cfg.model).state_dict()}, path)  # as detectron2's trainer: no names
    return path


def _export(tiny_config_path, weights, out, *extra):
    return CliRunner().invoke(app, ["export", "--to", "onnx", "--config", str(tiny_config_path), "--weights",
                                    str(weights), "--out", str(out), "--no-simplify", *extra])


def test_export_names_classes_with_class_names(tmp_path, tiny_config_path, tiny_nameless_weights):
    result = _export(tiny_config_path, tiny_nameless_weights, tmp_path / "named.onnx", "--class-names", "p,q,r,s")
    assert result.exit_code == 0, result.output
    assert read_model_metadata(tmp_path / "named.onnx")["class_names"] == ["p", "q", "r", "s"]
    assert load_predictor("ort", model=tmp_path / "named.onnx").class_names == ("p", "q", "r", "s")
    result = _export(tiny_config_path, tiny_nameless_weights, tmp_path / "plain.onnx")
    assert result.exit_code == 0, result.output
    assert read_model_metadata(tmp_path / "plain.onnx")["class_names"] == list(PLACEHOLDERS)


@pytest.mark.parametrize("extra, message", [
    (("--class-names", "p,q"), "got 2 class names but the model has 4 classes"),
    (("--class-names", "p,q,r,s", "--to", "trt"), "--class-names names the classes of an export from"),
])
def test_export_class_names_errors(tmp_path, tiny_config_path, tiny_nameless_weights, extra, message):
    result = _export(tiny_config_path, tiny_nameless_weights, tmp_path / "bad.onnx", *extra)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code != 0 and len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "bad.onnx").exists()
