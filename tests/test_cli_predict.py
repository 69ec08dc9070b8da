"""`instseg info` / `instseg predict` end to end, including bad input."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from instseg_deploy.atomic import IncompleteOutput, read_output_set
from instseg_deploy.cli.main import app
from instseg_deploy.cli.predict import predict
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import InstsegError
from instseg_deploy.image_io import expand_inputs
from instseg_deploy.runtime import factory

runner = CliRunner()


@pytest.fixture(scope="module")
def model_args(d2_dir):
    return ["--config", str(DEMO_DATA / "shapes_r50" / "config.yaml"),
            "--weights", str(DEMO_DATA / "shapes_r50" / "model_final.pkl")]


def _one_line_error(result):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_help_has_examples():
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0 and "Examples" in result.output and "--score-thresh" in result.output
    for example in ("predict clip.mp4", '"photos/**/*.jpg" --recursive', "predict --camera 0"):
        assert example in result.output
    assert "Examples" in runner.invoke(app, ["info", "--help"]).output


def test_score_thresh_default_is_the_apis():
    assert inspect.signature(predict).parameters["score_thresh"].default.default == factory.DEFAULT_SCORE_THRESH


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "instseg_deploy.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("instseg-deploy ")


def test_info(model_args):
    result = runner.invoke(app, ["info", *model_args, "--weights", model_args[3]])
    assert result.exit_code == 0, result.output
    assert "ResNet-50" in result.output and "2,773,736" in result.output
    assert "4: disc, square, triangle, ring" in result.output


def test_predict_writes_overlays_and_coco_results(tmp_path, d2_dir, model_args):
    images = tmp_path / "in"
    images.mkdir()
    for name in ("000000.jpg", "000001.jpg"):
        (images / name).write_bytes((DEMO_DATA / "shapes_val" / "images" / name).read_bytes())
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(images), *model_args, "--out", str(out), "--score-thresh", "0.5",
                                 "--class-names", "disc,square,triangle,ring"])
    assert result.exit_code == 0, result.output
    overlay = cv2.imread(str(out / "000000.png"))
    assert overlay.shape == cv2.imread(str(images / "000000.jpg")).shape
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} == {"000000.jpg", "000001.jpg"}
    assert all(r["score"] >= 0.5 and r["category_id"] in (1, 2, 3, 4) for r in results)
    assert all(set(r) >= {"image_id", "bbox", "segmentation", "score"} for r in results)
    assert len(results) >= 10


def test_converted_image_kinds(tmp_path, d2_dir, model_args):
    base = cv2.imread(str(DEMO_DATA / "shapes_val" / "images" / "000000.jpg"))
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(base, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), base.astype(np.uint16) * 257)
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(tmp_path / "gray.png"), str(tmp_path / "rgba.png"),
                                 str(tmp_path / "deep.png"), *model_args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "grayscale" in result.output and "alpha" in result.output and "16/32-bit" in result.output
    assert all((out / f"{n}.png").is_file() for n in ("gray", "rgba", "deep"))
    results = json.loads((out / "results.json").read_text())
    # 16-bit scaled down equals the 8-bit original: same detections as RGBA (alpha dropped) image
    per_file = {n: sorted(round(r["score"], 4) for r in results if r["file_name"] == n)
                for n in ("rgba.png", "deep.png")}
    assert per_file["rgba.png"] == per_file["deep.png"] and per_file["rgba.png"]


@pytest.mark.parametrize("case", ["missing_image", "missing_glob", "corrupt_image", "missing_config",
                                  "missing_weights", "other_class_count", "bad_thresh", "overwrite_input"])
def test_bad_input_is_one_line(tmp_path, d2_dir, model_args, case):
    image = str(DEMO_DATA / "shapes_val" / "images" / "000000.jpg")
    args = ["predict", image, *model_args, "--out", str(tmp_path / "out")]
    expect = {"missing_image": "no such file", "missing_glob": "no files match", "corrupt_image": "could not be read",
              "missing_config": "not found", "missing_weights": "not found",
              "other_class_count": "trained for 4 classes", "bad_thresh": "--score-thresh",
              "overwrite_input": "would replace the input"}[case]
    if case == "missing_image":
        args[1] = str(tmp_path / "nope.jpg")
    elif case == "missing_glob":
        args[1] = str(tmp_path / "*.jpg")
    elif case == "overwrite_input":  # the overlay of a.png in a.png's own folder
        args[1] = str(shutil.copy(DEMO_DATA / "shapes_val" / "images" / "000000.jpg", tmp_path / "a.png"))
        args[7] = str(tmp_path)
    elif case == "corrupt_image":
        corrupt = tmp_path / "corrupt.jpg"
        corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
        args[1] = str(corrupt)
    elif case == "missing_config":
        args[3] = str(tmp_path / "nope.yaml")
    elif case == "missing_weights":
        args[5] = str(tmp_path / "nope.pkl")
    elif case == "other_class_count":
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f'_BASE_: "{model_args[1]}"\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 80\n')
        args[3] = str(cfg)
    elif case == "bad_thresh":
        args += ["--score-thresh", "1.5"]
    assert expect in _one_line_error(runner.invoke(app, args))
    assert not (tmp_path / "out").exists()  # a failed run, here every input unreadable, writes nothing


def test_model_error_midway_leaves_no_results(tmp_path, d2_dir, model_args, monkeypatch):
    """The model fails on the second of three images: the first overlay is there, but no results.json
    and no complete output set."""
    load = factory.load_predictor

    def failing_on_second_image(*args, **kwargs):
        predictor = load(*args, **kwargs)
        run, calls = predictor.runner.run, []

        def run_then_fail(batch):
            calls.append(batch)
            if len(calls) == 2:
                raise RuntimeError("the model failed")
            return run(batch)

        predictor.runner.run = run_then_fail
        return predictor

    monkeypatch.setattr(factory, "load_predictor", failing_on_second_image)
    images = DEMO_DATA / "shapes_val" / "images"
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", *(str(images / f"00000{i}.jpg") for i in range(3)), *model_args,
                                 "--out", str(out)])
    assert isinstance(result.exception, RuntimeError) and result.exit_code != 0
    assert (out / "000000.png").is_file() and not (out / "results.json").exists()
    with pytest.raises(IncompleteOutput):
        read_output_set(out)


def _tree(root, files):
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_expand_inputs_folders_globs_and_others(tmp_path):
    root = _tree(tmp_path, ["a.jpg", "b.MP4", "notes.txt", ".hidden.png", "sub/c.png", "sub/deeper/d.avi",
                            "sub/e.csv", ".git/f.png", "txt/only.txt"])
    names = lambda paths: [str(p.relative_to(root)) for p in paths]  # noqa: E731
    top = expand_inputs([root])
    assert names(top.paths) == ["a.jpg", "b.MP4"] and names(top.other) == ["notes.txt"]
    deep = expand_inputs([root], recursive=True)
    assert names(deep.paths) == ["a.jpg", "b.MP4", "sub/c.png", "sub/deeper/d.avi"]
    assert names(deep.other) == ["notes.txt", "sub/e.csv", "txt/only.txt"]
    assert names(expand_inputs([f"{root}/**/*.png"]).paths) == ["sub/c.png"]  # ** is * without --recursive
    (root / "sub" / "up").symlink_to("..")  # a loop glob's ** follows: each file still once
    globbed = expand_inputs([f"{root}/**/*"], recursive=True)
    assert names(globbed.paths) == names(deep.paths) and names(globbed.other) == names(deep.other)
    # A file named explicitly is predicted whatever its name; one named twice, once.
    both = expand_inputs([root / "notes.txt", root, f"{root}/*.jpg"])
    assert names(both.paths) == ["notes.txt", "a.jpg", "b.MP4"] and names(both.other) == []
    for bad, message in [(f"{root}/*.gif", "no files match"), (root / "nope", "no such file"),
                         (root / "txt", "no images or videos"), (f"{root}/txt/*", "no images or videos")]:
        with pytest.raises(InstsegError, match=message):
            expand_inputs([bad])


def test_predict_quoted_recursive_glob_notes_other_files(tmp_path, d2_dir, model_args):
    images = DEMO_DATA / "shapes_val" / "images"
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(images / "000000.jpg", root / "a.jpg")
    shutil.copy(images / "000001.jpg", root / "sub" / "b.jpg")
    for name in ("notes.txt", "sub/labels.json", "sub/x.csv", "sub/y.csv"):
        (root / name).write_text("not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", f"{root}/**/*", "--recursive", *model_args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps the note where the tmp path's length says
    assert "4 file(s) neither image nor video" in said and "notes.txt" in said
    assert "and 1 more" in said
    assert {r["file_name"] for r in json.loads((out / "results.json").read_text())} == {"a.jpg", "b.jpg"}
    assert set(read_output_set(out)) == {"a.png", "b.png", "results.json"}
