"""COCO AP computed the way the field does (cocoapi's published statistics)."""

from __future__ import annotations

import json

import pytest

from instseg_deploy.evaluation.coco_eval import ENGINES, STAT_NAMES, evaluate, load_ground_truth
from conftest import DATA

COCOAPI = DATA / "cocoapi"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("iou_type, results_file", [("bbox", "instances_val2014_fakebbox100_results.json"),
                                                     ("segm", "instances_val2014_fakesegm100_results.json")])
def test_reproduces_cocoapi_statistics(engine, iou_type, results_file):
    expected = json.loads((COCOAPI / "expected_stats.json").read_text())[iou_type]
    gt = load_ground_truth(COCOAPI / "instances_val2014_100.json", engine)
    results = json.loads((COCOAPI / results_file).read_text())
    stats = evaluate(gt, results, iou_type, engine).stats
    for name, value in zip(STAT_NAMES, stats):
        # Equal to the last bit or one unit in the last place: both engines sum precisions with
        # numpy/C++ in an order that may differ from the machine that printed the reference.
        assert value == pytest.approx(expected[name], rel=0, abs=2.5e-16), (name, value, expected[name])


def test_detectron2_results_file_gives_detectron2_metrics(d2_dir):
    """detectron2's own detections evaluate to the AP its COCOEvaluator printed."""
    d2 = json.loads((d2_dir / "d2_eval.json").read_text())["detectron2_eval"]
    gt = load_ground_truth(d2_dir / "shapes_val" / "annotations.json")
    results = json.loads((d2_dir / "eval" / "coco_instances_results.json").read_text())
    for iou_type in ("bbox", "segm"):
        metrics = evaluate(gt, results, iou_type).metrics()
        for key, value in d2[iou_type].items():
            assert metrics[key] == pytest.approx(value, abs=1e-9), (iou_type, key)
