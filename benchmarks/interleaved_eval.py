"""Several predictors on one COCO dataset, interleaved per image: each image is predicted by every
predictor in turn, so a busy machine slows all of them alike; how many of one predictor's confident
detections the others find again; and model-only timings taken round-robin the same way. Shared by
openvino_parity.py, openvino_speed.py, openvino_bf16.py and openvino_nncf.py (run as scripts from
this folder, which puts it on sys.path)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

# A detection the reference scores at least this is confident; found again: same class, box IoU at
# least SAME_BOX_IOU (scores may differ).
CONFIDENT_SCORE, SAME_BOX_IOU = 0.5, 0.99


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 here (AVX512-BF16 or AMX); elsewhere a bf16 row would
    run f32 again under another name, so the scripts leave bf16 rows out."""
    from instseg_deploy.runtime.openvino import cpu_capabilities, shared_core

    return "BF16" in cpu_capabilities(shared_core())


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


class FoundAgain:
    """Per label: how many of ``reference``'s confident detections it finds again, summed over the
    images given to :meth:`add` (each image's {label: Instances}, as predict_interleaved's on_image)."""

    def __init__(self, reference: str, labels) -> None:
        self.reference, self.confident, self.found = reference, 0, dict.fromkeys(labels, 0)

    def add(self, results: dict) -> None:
        from instseg_deploy.evaluation.parity import match_detections

        reference = results[self.reference]
        confident = reference.select(reference.scores >= CONFIDENT_SCORE)
        self.confident += len(confident)
        for label in self.found:
            self.found[label] += match_detections(confident, results[label], min_box_iou=SAME_BOX_IOU,
                                                  max_score_diff=1.0).matched

    def percent(self, label: str) -> float:
        return 100 * self.found[label] / max(self.confident, 1)


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


def median_seconds_round_robin(calls: dict[str, Callable[[], object]], runs: int, warmup: int = 1,
                               name: str = "speed") -> dict[str, float]:
    """{label: median seconds of ``runs`` calls}, every call in turn per round after ``warmup`` rounds."""
    seconds: dict[str, list[float]] = {label: [] for label in calls}
    for round_ in range(warmup + runs):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            if round_ >= warmup:
                seconds[label].append(time.perf_counter() - start)
        print(f"{name}: round {round_ + 1}/{warmup + runs}", file=sys.stderr, flush=True)
    return {label: statistics.median(values) for label, values in seconds.items()}


def print_latency_table(title: str, median: dict[str, float], column: str, ratio: Callable[[float], float],
                        digits: int = 2) -> None:
    """A Markdown table of median seconds in ms, with ``ratio`` of each as the last column."""
    print(f"#### {title}\n\n| variant | ms | {column} |\n|---|---|---|")
    for label, value in median.items():
        print(f"| {label} | {1e3 * value:.1f} | {ratio(value):.{digits}f}x |")
