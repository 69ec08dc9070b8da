"""`instseg eval` end to end: detectron2 parity of AP, ORT parity, torchrun, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from instseg_deploy.cli.main import app
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.evaluation.parity import match_detections

runner = CliRunner()


@pytest.fixture(scope="module")
def shapes_args(d2_dir):
    return ["--images", str(DEMO_DATA / "shapes_val" / "images"),
            "--annotations", str(DEMO_DATA / "shapes_val" / "annotations.json")]


@pytest.fixture(scope="module")
def torch_args(d2_dir):
    return ["--config", str(DEMO_DATA / "shapes_r50" / "config.yaml"),
            "--weights", str(DEMO_DATA / "shapes_r50" / "model_final.pkl")]


@pytest.fixture(scope="module")
def torch_metrics(tmp_path_factory, shapes_args, torch_args):
    out = tmp_path_factory.mktemp("eval_torch")
    result = runner.invoke(app, ["eval", *torch_args, *shapes_args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text()), out


def test_torch_backend_matches_detectron2_ap(torch_metrics, d2_dir):
    metrics, out = torch_metrics
    d2 = json.loads((d2_dir / "d2_eval.json").read_text())["detectron2_eval"]
    for iou_type in ("bbox", "segm"):
        assert set(metrics[iou_type]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert abs(metrics[iou_type]["AP"] - d2[iou_type]["AP"]) <= 0.1, iou_type
    detections = json.loads((out / "detections.json").read_text())
    assert detections and all(isinstance(d["segmentation"]["counts"], str) for d in detections[:10])
    assert {d["category_id"] for d in detections} <= {1, 2, 3, 4}


def _detections_by_image(path):
    by_image = {}
    for d in json.loads(path.read_text()):
        by_image.setdefault(d["image_id"], []).append(d)
    return by_image


def _as_instances(dets):
    from instseg_deploy.structures import Instances

    boxes = np.array([d["bbox"] for d in dets], np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return Instances((0, 0), boxes, np.array([d["score"] for d in dets]), np.array([d["category_id"] for d in dets]))


def test_ort_backend_matches_torch_ap(torch_metrics, exported_onnx, shapes_args, tmp_path):
    """Standard-op ONNX (issue 4) and plugin-flavoured ONNX (issue 7) on the whole fixture val set."""
    torch_m, _ = torch_metrics
    metrics = {}
    for variant in ("raw", "plugin"):
        result = runner.invoke(app, ["eval", "--backend", "ort", "--model", str(exported_onnx[variant]), *shapes_args,
                                     "--out", str(tmp_path / variant)])
        assert result.exit_code == 0, result.output
        metrics[variant] = json.loads((tmp_path / variant / "metrics.json").read_text())
    for iou_type in ("bbox", "segm"):
        assert abs(metrics["raw"][iou_type]["AP"] - torch_m[iou_type]["AP"]) <= 0.05, iou_type
        assert abs(metrics["plugin"][iou_type]["AP"] - metrics["raw"][iou_type]["AP"]) <= 0.05, iou_type
    # detection level: the plugin graph gives the standard graph's detections, masks included
    standard = _detections_by_image(tmp_path / "raw" / "detections.json")
    plugin = _detections_by_image(tmp_path / "plugin" / "detections.json")
    matched = total = 0
    for image_id in set(standard) | set(plugin):
        ref, ours = standard.get(image_id, []), plugin.get(image_id, [])
        report = match_detections(_as_instances(ref), _as_instances(ours))
        matched += report.matched
        total += max(len(ref), len(ours))
        for r, c in report.pairs:
            a, b = ours[c]["segmentation"], ref[r]["segmentation"]
            if mask_utils.area(a) == mask_utils.area(b) == 0:
                continue  # both masks empty (a sliver box): identical, though pycocotools calls it IoU 0
            assert mask_utils.iou([a], [b], [0])[0, 0] >= 0.98
    assert total > 3000 and matched / total >= 0.995


def test_torchrun_two_processes_equal_one(tmp_path, shapes_args, torch_args):
    common = ["eval", *torch_args, *shapes_args, "--limit", "12", "--evaluator", "pycocotools"]
    single = runner.invoke(app, [*common, "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "instseg_deploy.cli.main", *common,
                           "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(rank 1/2)" in proc.stderr
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one == two
    assert len(json.loads((tmp_path / "two" / "detections.json").read_text())) == len(
        json.loads((tmp_path / "one" / "detections.json").read_text()))


def test_predictions_mode_writes_present_types(tmp_path, d2_dir):
    results = json.loads((d2_dir / "eval" / "coco_instances_results.json").read_text())
    boxes_only = tmp_path / "boxes.json"
    boxes_only.write_text(json.dumps([{k: v for k, v in r.items() if k != "segmentation"} for r in results]))
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "--predictions", str(boxes_only), "--annotations",
                                 str(DEMO_DATA / "shapes_val" / "annotations.json"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["bbox"] and metrics["bbox"]["AP"] == pytest.approx(51.912547649101114)


def test_polygon_results_score_like_their_rle(tmp_path, d2_dir):
    """COCO results may carry polygons: they are rasterised at the image's size, so polygons traced around
    each mask score exactly like those same polygons given as RLE."""
    import cv2
    from pycocotools import mask as mask_utils

    results = json.loads((d2_dir / "eval" / "coco_instances_results.json").read_text())[:300]
    as_polygons, as_rle = [], []
    for r in results:
        mask = mask_utils.decode({**r["segmentation"], "counts": r["segmentation"]["counts"].encode()})
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        if not polygons:
            continue
        h, w = mask.shape
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
        as_polygons.append({**r, "segmentation": polygons})
        as_rle.append({**r, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    metrics = {}
    for name, entries in (("polygons", as_polygons), ("rle", as_rle)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(entries))
        result = runner.invoke(app, ["eval", "--predictions", str(path), "--annotations",
                                     str(DEMO_DATA / "shapes_val" / "annotations.json"), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())["segm"]["AP"]
    assert metrics["polygons"] == metrics["rle"] and metrics["rle"] > 0


def _error_line(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("case, expect", [
    ("unknown_category", "category id(s) [99]"),
    ("unknown_image", "image id(s) not in the annotations"),
    ("empty", "no detections"),
    ("not_coco", "not a COCO results file"),
    ("not_json", "not valid JSON"),
    ("bad_annotations", "not a COCO instances file"),
])
def test_bad_results_files(tmp_path, d2_dir, case, expect):
    annotations = DEMO_DATA / "shapes_val" / "annotations.json"
    good = json.loads((d2_dir / "eval" / "coco_instances_results.json").read_text())[:50]
    path = tmp_path / "results.json"
    content = {"unknown_category": [{**good[0], "category_id": 99}, *good[1:]],
               "unknown_image": [{**good[0], "image_id": 123456}, *good[1:]],
               "empty": [], "not_coco": {"hello": 1}, "not_json": None, "bad_annotations": good}[case]
    path.write_text("{oops" if case == "not_json" else json.dumps(content))
    if case == "bad_annotations":
        annotations = tmp_path / "ann.json"
        annotations.write_text(json.dumps({"foo": []}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "--predictions", str(path), "--annotations", str(annotations),
                                 "--out", str(out)])
    assert expect in _error_line(result)
    assert not out.exists() or not any(out.iterdir())


def test_missing_images_and_class_mismatch(tmp_path, d2_dir, torch_args):
    data = json.loads((DEMO_DATA / "shapes_val" / "annotations.json").read_text())
    data["images"][0]["file_name"] = "does_not_exist.jpg"
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    out = tmp_path / "out"
    args = ["eval", *torch_args, "--images", str(DEMO_DATA / "shapes_val" / "images"), "--out", str(out)]
    assert "missing" in _error_line(runner.invoke(app, [*args, "--annotations", str(ann)]))
    data = json.loads((DEMO_DATA / "shapes_val" / "annotations.json").read_text())
    data["categories"].append({"id": 5, "name": "star"})
    ann.write_text(json.dumps(data))
    assert "4 classes but the dataset has 5" in _error_line(runner.invoke(app, [*args, "--annotations", str(ann)]))
    assert not out.exists()


@pytest.mark.parametrize("args, expect", [
    (["--coco-root", "coco", "--images", "images"], "give either --coco-root or --images with --annotations"),
    (["--images", "images"], "a dataset is needed: --images DIR --annotations FILE, or --coco-root DIR"),
    ([], "a dataset is needed"),
])
def test_dataset_options_are_one_choice(args, expect, torch_args):
    """--images with --annotations, or --coco-root: one clear error otherwise, before any model is loaded."""
    assert expect in _error_line(runner.invoke(app, ["eval", *torch_args, *args]))


def test_data_synth_cli(tmp_path):
    out = tmp_path / "shapes"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--images", "6", "--split", "train=4,val=2"])
    assert result.exit_code == 0, result.output
    val = json.loads((out / "val" / "annotations.json").read_text())
    assert len(val["images"]) == 2 and val["categories"][0]["name"] == "disc"
    again = runner.invoke(app, ["data", "synth", "--out", str(out), "--images", "6"])
    assert "not empty" in _error_line(again)
