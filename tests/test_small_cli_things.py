"""Small CLI things (issue 21, item 7): plain flags in --help, $DETECTRON2_DATASETS, doctor without an
NVIDIA GPU, and one TensorRT-missing message for `bench` and `export`."""

from __future__ import annotations

import shutil
import sys

import pytest
import typer
from typer.testing import CliRunner

from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.cli import doctor as doctor_cli
from instseg_deploy.cli.main import app
from instseg_deploy.config import load_config
from instseg_deploy.data.coco import DatasetError, dataset_paths
from instseg_deploy.data.synth import generate
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.modeling import build_model
from instseg_deploy.runtime.trt import util as trt_util

runner = CliRunner()


def _command_paths(command, prefix=()):
    """Every command of the CLI as its words, e.g. ("data", "synth"); groups too."""
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*prefix, name))


def test_no_help_shows_a_type_tag_on_a_flag():
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("predict",) in paths and ("data", "synth") in paths and ("doctor",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
        assert "--help" in result.output
    predict_help = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).output
    assert "--no-overlap" in predict_help and "--recursive" in predict_help and "<path>" in predict_help


# ----------------------------------------------------------------------------- DETECTRON2_DATASETS


@pytest.fixture(scope="module")
def detectron2_datasets(tmp_path_factory):
    """A DETECTRON2_DATASETS folder with coco/val2017/ and coco/annotations/instances_val2017.json (2 images)."""
    root = tmp_path_factory.mktemp("d2_datasets")
    shapes = generate(root / "shapes", 2, seed=1, image_size=(64, 96), max_instances=2)["all"].parent
    coco = root / "coco"
    (coco / "annotations").mkdir(parents=True)
    shutil.move(shapes / "images", coco / "val2017")
    shutil.move(shapes / "annotations.json", coco / "annotations" / "instances_val2017.json")
    return root


def test_dataset_paths_fall_back_to_detectron2_datasets(detectron2_datasets, tmp_path, monkeypatch):
    coco = detectron2_datasets / "coco"
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    with pytest.raises(DatasetError, match="or --coco-root DIR"):
        dataset_paths(None, None, None)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(detectron2_datasets))
    assert dataset_paths(None, None, None) == (coco / "val2017", coco / "annotations" / "instances_val2017.json")
    # explicit paths win over the variable
    assert dataset_paths(tmp_path, tmp_path / "a.json", None) == (tmp_path, tmp_path / "a.json")
    assert dataset_paths(None, None, tmp_path)[0] == tmp_path / "val2017"
    with pytest.raises(DatasetError, match="is needed"):  # half a pair stays an error, not the variable's set
        dataset_paths(tmp_path, None, None)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match=r"\$DETECTRON2_DATASETS has no COCO val2017 annotations at "):
        dataset_paths(None, None, None)


def test_eval_without_dataset_options_reads_detectron2_datasets(detectron2_datasets, tmp_path, tiny_config_path):
    cfg = load_config(tiny_config_path)
    weights = tmp_path / "tiny.pth"
    save_checkpoint(weights, build_model(cfg.model), cfg.raw, ("disc", "square", "triangle", "ring"))
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--weights", str(weights), "--out", str(out), "--threads", "1",
                                 "--mask-format", "none", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],
                           env={"DETECTRON2_DATASETS": str(detectron2_datasets)})
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file()
    help_text = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).output
    assert "$DETECTRON2_DATASETS/coco" in help_text


@pytest.fixture(scope="module")
def detectron2_datasets_with_train(tmp_path_factory):
    """A DETECTRON2_DATASETS folder whose coco/ has train2017/ and val2017/ (2 images each) with their annotations."""
    root = tmp_path_factory.mktemp("d2_datasets_train")
    splits = generate(root / "shapes", 4, seed=1, splits={"train": 2, "val": 2}, image_size=(64, 96), max_instances=2)
    coco = root / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split, ann_file in splits.items():
        shutil.move(ann_file.parent / "images", coco / f"{split}2017")
        shutil.move(ann_file, coco / "annotations" / f"instances_{split}2017.json")
    return root


def test_train_takes_both_splits_from_detectron2_datasets(detectron2_datasets_with_train, monkeypatch):
    from instseg_deploy.cli.train import _datasets

    coco = detectron2_datasets_with_train / "coco"
    no_options = {"images": None, "annotations": None, "coco_root": None, "val_images": None, "val_annotations": None}
    monkeypatch.setenv("DETECTRON2_DATASETS", str(detectron2_datasets_with_train))
    train_set, val_set = _datasets(**no_options)
    assert train_set.annotations_path == coco / "annotations" / "instances_train2017.json"
    assert train_set.images_dir == coco / "train2017" and len(train_set.images) == 2
    assert val_set is not None and val_set.annotations_path == coco / "annotations" / "instances_val2017.json"
    assert val_set.images_dir == coco / "val2017"
    # an explicit training set is not given the variable's val2017 as its validation set
    explicit = {**no_options, "images": coco / "train2017",
                "annotations": coco / "annotations" / "instances_train2017.json"}
    assert _datasets(**explicit)[1] is None


def test_quantize_calibrates_on_detectron2_datasets(detectron2_datasets_with_train, tmp_path, monkeypatch):
    from instseg_deploy.cli import quantize as quantize_cli

    model = tmp_path / "m.onnx"
    model.write_bytes(b"never read: the INT8 run is replaced below")
    calibrated = []
    monkeypatch.setattr(quantize_cli, "_run_int8", lambda **kwargs: calibrated.append(kwargs["images"]))
    args = ["quantize", "--model", str(model), "--calib", "--out", str(tmp_path / "q.onnx")]
    result = runner.invoke(app, args, env={"DETECTRON2_DATASETS": str(detectron2_datasets_with_train)})
    assert result.exit_code == 0, result.output
    train2017 = detectron2_datasets_with_train / "coco" / "train2017"
    assert calibrated == [sorted(train2017.glob("*.jpg"))]  # train2017 is preferred, as with --coco-root
    # --images wins over the variable
    images = detectron2_datasets_with_train / "coco" / "val2017"
    result = runner.invoke(app, [*args, "--images", str(images)],
                           env={"DETECTRON2_DATASETS": str(detectron2_datasets_with_train)})
    assert result.exit_code == 0, result.output
    assert calibrated[-1] == sorted(images.glob("*.jpg"))


# ----------------------------------------------------------------------------- doctor without a GPU

GPU_PACKAGES = ("tensorrt", "onnxruntime-gpu", "cuda build", "nvidia-smi")
GPU_ROWS = ("torch-cuda", "ort-cuda", "ort-trt", "trt", "trt-plugin")


def test_doctor_without_an_nvidia_gpu_suggests_no_gpu_package():
    rows = {r.key: r for r in doctor_cli.backend_statuses(doctor_cli.probe_environment(gpu_probe=lambda: False))}
    for key in GPU_ROWS:
        assert not rows[key].usable and rows[key].fix is None, rows[key]
        assert "needs an NVIDIA GPU; none was found" in rows[key].detail, rows[key]
    fixes = " ".join(r.fix or "" for r in rows.values()).lower()
    assert not any(package in fixes for package in GPU_PACKAGES), fixes
    assert rows["torch"].usable and rows["ort"].usable  # the CPU backends are still reported


def test_doctor_with_an_unusable_nvidia_gpu_still_says_how_to_fix_it():
    """A GPU is present but the software cannot use it: then installing GPU packages is the fix."""
    env = doctor_cli.probe_environment(gpu_probe=lambda: True)
    env.gpus, env.trt_version, env.trt_problem = [], None, "TensorRT is not installed"
    env.ort_providers = ["CPUExecutionProvider"]
    env.plugin_library = None
    rows = {r.key: r for r in doctor_cli.backend_statuses(env)}
    assert "onnxruntime-gpu" in rows["ort-cuda"].fix and "tensorrt-cu12" in rows["trt"].fix
    assert rows["torch-cuda"].fix and "cmake" in rows["trt-plugin"].fix
    assert not any("none was found" in r.detail for r in rows.values())


def test_doctor_notes_int8_saturation_on_the_cpu_backends_of_a_cpu_without_vnni():
    env = doctor_cli.probe_environment(gpu_probe=lambda: False)
    for saturates in (True, False):
        env.int8_pairs_saturate = saturates
        rows = {r.key: r for r in doctor_cli.backend_statuses(env)}
        noted = {key for key, row in rows.items() if any("--weight-bits 7" in note for note in row.notes)}
        assert noted == ({"ort", "openvino"} if saturates else set()), rows


def test_doctor_says_what_precision_auto_runs_on_openvino():
    env = doctor_cli.probe_environment(gpu_probe=lambda: False)
    env.openvino_version, env.openvino_problem = "2026.4.1", None
    cases = {(("BF16", "FP32", "INT8"), "bf16"): "--precision auto runs bf16 here",
             (("BF16", "FP32", "INT8"), "f32"): "ask for --precision bf16",
             (("FP32", "INT8"), "f32"): "no native BF16 on this CPU"}
    for (capabilities, auto), expected in cases.items():
        env.openvino_capabilities, env.openvino_auto_precision = list(capabilities), auto
        notes = {r.key: r for r in doctor_cli.backend_statuses(env)}["openvino"].notes
        assert any(expected in note for note in notes), notes


def test_doctor_command_says_when_there_is_no_gpu():
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert ("No NVIDIA GPU on this machine" in result.output) == (not trt_util.nvidia_gpu_found())


# ----------------------------------------------------------------------------- one TensorRT-missing message


def test_bench_and_export_say_the_same_line_before_reading_any_model(tmp_path, monkeypatch):
    """Without TensorRT, `bench --backend trt` and `export --to trt` fail with the one line of
    runtime.trt.util, before any model is read: the junk model files would fail otherwise."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, on any machine
    junk_engine, junk_onnx, junk_weights = tmp_path / "junk.engine", tmp_path / "junk.onnx", tmp_path / "junk.pth"
    for junk in (junk_engine, junk_onnx, junk_weights):
        junk.write_bytes(b"not a model")
    out = tmp_path / "out"
    expected = f"error: {trt_util.tensorrt_missing('', trt_util.nvidia_gpu_found())}"
    assert "needs an NVIDIA GPU with CUDA and the TensorRT Python package" in expected and "tensorrt-cu12" in expected
    assert ("no NVIDIA GPU" in expected) == (not trt_util.nvidia_gpu_found())
    commands = [["bench", "--backend", "trt", "--model", str(junk_engine), "--json", str(out / "b.json")],
                ["bench", "--backend", "torch,trt", "--weights", str(junk_weights), "--model", str(junk_engine),
                 "--markdown", str(out / "b.md")],
                ["export", "--to", "trt", "--model", str(junk_onnx), "--out", str(out / "m.engine")],
                ["export", "--to", "trt", "--config", str(DEMO_DATA / "shapes_r50" / "config.yaml"),
                 "--weights", str(junk_weights), "--out", str(out / "m.engine"), "--fp16"]]
    for args in commands:
        result = runner.invoke(app, args, env={"COLUMNS": "400"})
        assert result.exit_code == 2, (args, result.output)
        assert [line for line in result.output.splitlines() if line.strip()] == [expected], (args, result.output)
        assert not out.exists()
