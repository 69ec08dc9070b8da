"""Checkpoints load by name and never execute code from the file."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from instseg_deploy.checkpoint import load_weights, read_checkpoint
from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.config import config_from_tree, load_config
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import CheckpointError
from instseg_deploy.modeling import build_model
from instseg_deploy.runtime.torch_model import load_model


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pkl_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": _Exploit(marker)}, "__author__": "x"}, protocol=2))
    # Sanity: the file really is an exploit when loaded naively.
    pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match="system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_malicious_pth_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "trainer": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        read_checkpoint(path)
    assert not marker.exists()


def test_garbage_and_truncated_files(tmp_path, d2_dir):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoint(junk)
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes((d2_dir / "shapes_r50" / "model_final.pth").read_bytes()[:100000])
    with pytest.raises(CheckpointError):
        read_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")


def test_other_class_count_is_named(tmp_path, d2_dir):
    cfg_path = tmp_path / "c.yaml"
    base = DEMO_DATA / "shapes_r50" / "config.yaml"
    cfg_path.write_text(f'_BASE_: "{base}"\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 80\n')
    with pytest.raises(CheckpointError, match="trained for 4 classes .*NUM_CLASSES=80"):
        load_model(cfg_path, DEMO_DATA / "shapes_r50" / "model_final.pkl")


def test_missing_and_unexpected_keys_are_named(tmp_path, fixture_model):
    model, cfg = fixture_model
    state = dict(model.state_dict())
    state.pop("roi_heads.mask_head.deconv.bias")
    state["roi_heads.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save({"model": state}, path)
    fresh = build_model(cfg.model)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): roi_heads\.mask_head\.deconv\.bias.*"
                                              r"unexpected 1 key\(s\): roi_heads\.extra_head\.weight"):
        load_weights(fresh, read_checkpoint(path))


def test_own_format_round_trip_carries_config_and_names(tmp_path, fixture_model, tiny_config_path):
    cfg = load_config(tiny_config_path)
    model = build_model(cfg.model)
    path = tmp_path / "tiny.pth"
    names = ("disc", "square", "triangle", "ring")
    save_checkpoint(path, model, cfg.raw, names, iteration=7)
    loaded, loaded_cfg = load_model(None, path)  # config comes from the file
    assert read_checkpoint(path).kind == "instseg"
    assert loaded_cfg.class_names == names and loaded_cfg.model == cfg.model
    assert config_from_tree(cfg.raw).model == cfg.model
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left nothing behind


def test_detectron2_checkpoint_without_config_is_refused(d2_dir):
    from instseg_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="--config"):
        load_model(None, DEMO_DATA / "shapes_r50" / "model_final.pkl")
