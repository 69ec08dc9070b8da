"""COCO AP computed the way the field does (cocoapi's published statistics)."""

from __future__ import annotations

import json

import pytest

from conftest import DATA
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.evaluation.coco_eval import ENGINES, STAT_NAMES, evaluate, load_ground_truth

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
    gt = load_ground_truth(DEMO_DATA / "shapes_val" / "annotations.json")
    results = json.loads((d2_dir / "eval" / "coco_instances_results.json").read_text())
    for iou_type in ("bbox", "segm"):
        metrics = evaluate(gt, results, iou_type).metrics()
        for key, value in d2[iou_type].items():
            assert metrics[key] == pytest.approx(value, abs=1e-9), (iou_type, key)


class _GroundTruthEcho:
    """Stands in for a model: answers each image with its own ground truth (boxes and masks), the images
    taken in the order dataset_ap predicts them (one process: the records' order)."""

    def __init__(self, dataset, records):
        from pycocotools.coco import COCO

        self.class_names = dataset.class_names
        self.gt, self.category_ids = COCO(str(dataset.annotations_path)), dataset.category_ids
        self.order = iter(records)

    def __call__(self, image):
        import numpy as np

        from instseg_deploy.structures import Instances

        anns = self.gt.loadAnns(self.gt.getAnnIds(imgIds=next(self.order).id))
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = np.stack([self.gt.annToMask(a).astype(bool) for a in anns]) if anns else None
        classes = np.array([self.category_ids.index(a["category_id"]) for a in anns], np.int64)
        return Instances(image.shape[:2], boxes, np.linspace(1.0, 0.5, len(anns), dtype=np.float32), classes, masks)


def test_dataset_ap_scores_exactly_the_predicted_images():
    """Perfect detections on 3 of the 100 images are 100 AP on those 3 (not a recall of 3%), for
    boxes and masks; a model that finds nothing is a clear error, not a COCOeval crash."""
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.evaluation.dataset_ap import NoDetectionsError, dataset_ap

    dataset = load_coco_dataset(DEMO_DATA / "shapes_val" / "images", DEMO_DATA / "shapes_val" / "annotations.json")
    records = dataset.images[:3]
    seen = []
    scored = dataset_ap(_GroundTruthEcho(dataset, records), dataset, records, on_image=lambda: seen.append(1))
    assert scored.ap() == {"bbox": pytest.approx(100.0), "segm": pytest.approx(100.0)}
    assert len(seen) == 3 and {d["image_id"] for d in scored.detections} == {r.id for r in records}

    class Blind(_GroundTruthEcho):
        def __call__(self, image):
            from instseg_deploy.structures import Instances

            return Instances.empty(image.shape[:2])

    with pytest.raises(NoDetectionsError, match="no detections on the 3 image"):
        dataset_ap(Blind(dataset, records), dataset, records)
