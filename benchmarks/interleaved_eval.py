"""Several predictors on one COCO dataset, interleaved per image: each image is predicted by every
predictor in turn, so a busy machine slows all of them alike. Shared by openvino_parity.py and
openvino_speed.py (run as scripts from this folder, which puts it on sys.path)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class InterleavedRun:
    """Per predictor label: its COCO results (dataset ids, RLE masks) and the seconds it took."""

    detections: dict[str, list]
    seconds: dict[str, float]

    def ap(self, dataset) -> dict[str, dict[str, float]]:
        """{label: {"bbox": AP, "segm": AP}} in percent, every label against the same ground truth."""
        from instseg_deploy.evaluation.coco_eval import evaluate, load_ground_truth

        gt = load_ground_truth(dataset.annotations_path)
        return {label: {t: evaluate(gt, dets, t).metrics()["AP"] for t in ("bbox", "segm")}
                for label, dets in self.detections.items()}


def predict_interleaved(predictors: dict, dataset, on_image: Callable[[dict], None] | None = None,
                        name: str = "eval") -> InterleavedRun:
    """Every image of ``dataset`` through every predictor (pre/post-processing included in the time);
    ``on_image`` gets each image's {label: Instances}."""
    from instseg_deploy.coco_format import instances_to_coco
    from instseg_deploy.data.coco import read_dataset_image

    run = InterleavedRun({label: [] for label in predictors}, dict.fromkeys(predictors, 0.0))
    for i, record in enumerate(dataset.images):
        image = read_dataset_image(record.path, record.id, record.height, record.width)
        results = {}
        for label, predictor in predictors.items():
            start = time.perf_counter()
            results[label] = predictor(image)
            run.seconds[label] += time.perf_counter() - start
            run.detections[label].extend(instances_to_coco(results[label], record.id, dataset.category_ids))
        if on_image is not None:
            on_image(results)
        if i % 50 == 0:
            print(f"{name}: image {i + 1}/{len(dataset.images)}", file=sys.stderr, flush=True)
    return run
