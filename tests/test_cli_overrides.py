"""detectron2-style `KEY VALUE` config overrides on the command line (eval, export, train, predict),
compared with the same values written into a `_BASE_`-inheriting YAML."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from instseg_deploy.cli.main import app
from instseg_deploy.data.synth import generate
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.model_file.metadata import METADATA_KEY
from tiny_training import tiny_schedule

runner = CliRunner()
CONFIG = DEMO_DATA / "shapes_r50" / "config.yaml"
WEIGHTS = DEMO_DATA / "shapes_r50" / "model_final.pkl"
VAL = ["--images", str(DEMO_DATA / "shapes_val" / "images"), "--annotations",
       str(DEMO_DATA / "shapes_val" / "annotations.json"), "--limit", "4"]
OVERRIDES = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.3", "MODEL.ROI_HEADS.NMS_THRESH_TEST", "0.6"]


@pytest.fixture(scope="module")
def derived_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("derived") / "derived.yaml"
    path.write_text(f"_BASE_: {CONFIG}\nMODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0.3\n    NMS_THRESH_TEST: 0.6\n")
    return path


def _detections(tmp_path, name: str, args: list[str]) -> list[dict]:
    out = tmp_path / name
    result = runner.invoke(app, ["eval", *args, *VAL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "detections.json").read_text())


def test_eval_overrides_equal_the_values_in_a_yaml(tmp_path, derived_config):
    by_yaml = _detections(tmp_path, "yaml", ["-c", str(derived_config), "-w", str(WEIGHTS)])
    by_overrides = _detections(tmp_path, "overrides", ["-c", str(CONFIG), "-w", str(WEIGHTS), *OVERRIDES])
    plain = _detections(tmp_path, "plain", ["-c", str(CONFIG), "-w", str(WEIGHTS)])
    assert by_overrides == by_yaml and len(by_yaml) < len(plain)
    weights_override = _detections(tmp_path, "weights", ["-c", str(CONFIG), "MODEL.WEIGHTS", str(WEIGHTS)])
    assert weights_override == plain


def test_main_drops_detectron2s_opts_word(monkeypatch):
    """`instseg eval ... --opts K V` (demo.py's spelling) is the same as trailing `K V`."""
    import instseg_deploy.cli.main as main

    seen = {}
    monkeypatch.setattr(main, "app", lambda args, prog_name: seen.setdefault("args", args))
    monkeypatch.setattr("sys.argv", ["instseg", "eval", "-c", "c.yaml", "--opts", "MODEL.WEIGHTS", "w.pkl"])
    main.main()
    assert seen["args"] == ["eval", "-c", "c.yaml", "MODEL.WEIGHTS", "w.pkl"]


@pytest.mark.parametrize("words, expect", [
    (["MODEL.ROI_HEADS.SCORE_THRESH", "0.3"], "MODEL.ROI_HEADS.SCORE_THRESH"),
    (["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "'high'"], "MODEL.ROI_HEADS.SCORE_THRESH_TEST"),
    (["MODEL.ROI_HEADS.SCORE_THRESH_TEST"], "has no value"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_a_bad_override_is_one_error_line(words, expect):
    result = runner.invoke(app, ["eval", "-c", str(CONFIG), "-w", str(WEIGHTS), *VAL, *words])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and expect in errors[0], result.output
    assert "Traceback" not in result.output


def test_export_records_the_overrides_in_its_metadata(tmp_path):
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "-c", str(CONFIG), "-w", str(WEIGHTS), "--out", str(out), *OVERRIDES])
    assert result.exit_code == 0, result.output
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    meta = json.loads(props[METADATA_KEY])
    assert meta["config_overrides"] == OVERRIDES
    assert meta["postprocess"]["score_thresh"] == 0.3 and meta["postprocess"]["nms_thresh"] == 0.6
    assert "SCORE_THRESH_TEST: 0.3" in meta["config"]


def test_train_run_folder_config_shows_the_overrides(tmp_path, tiny_config_path):
    data = tmp_path / "data"
    generate(data, 4, seed=0, image_size=(64, 96), max_instances=2)
    config = tmp_path / "tiny.yaml"
    config.write_text(f'_BASE_: "{tiny_config_path}"\n'
                      + tiny_schedule(max_iter=1, steps=[], warmup_iters=1, checkpoint_period=1))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", str(config), "--images", str(data / "images"), "--annotations",
                                 str(data / "annotations.json"), "--out", str(out), "--threads", "1",
                                 "SOLVER.BASE_LR", "0.005", "SOLVER.WEIGHT_DECAY", "0.0002"])
    assert result.exit_code == 0, result.output
    text = (out / "config.yaml").read_text()
    assert "# command-line overrides: SOLVER.BASE_LR 0.005 SOLVER.WEIGHT_DECAY 0.0002" in text
    assert "BASE_LR: 0.005" in text and "WEIGHT_DECAY: 0.0002" in text
