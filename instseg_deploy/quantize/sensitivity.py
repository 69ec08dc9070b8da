"""Where does INT8 accuracy go? Quantize one network stage at a time and measure each.

For every stage (backbone, FPN, RPN head, box head, mask head) a model with only that stage
quantized is written and run with ONNX Runtime next to the FP32 model: with ground truth the
COCO box/mask AP, without it the output error against FP32 (share of FP32 detections found
again, their box IoU, score and mask differences). A last row quantizes everything.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instseg_deploy.quantize.qdq import (
    NothingToQuantize,
    QuantizeSettings,
    quantize_int8,
)
from instseg_deploy.quantize.stages import QUANTIZED_OP_TYPES, STAGES, stage_nodes

ALL = "all stages"
# Output-error matching: a quantized detection matches an FP32 one of the same class with box
# IoU >= 0.5 (COCO's loosest threshold); scores may differ freely, the difference is reported.
MATCH_IOU = 0.5


@dataclass
class StageResult:
    stage: str
    quantized_nodes: int
    metrics: dict[str, float] = field(default_factory=dict)  # AP (bbox/segm) or output-error numbers


def output_error(reference: list, candidate: list) -> dict[str, float]:
    """Agreement of per-image Instances lists with the ``reference`` ones.

    found %: share of reference detections found again; matched %: matched pairs over the
    larger side (extra detections count too); box IoU, |score diff|, mask IoU: means over pairs.
    """
    from instseg_deploy.parity import box_iou, match_detections

    found, total, references, ious, score_diffs, mask_ious = 0, 0, 0, [], [], []
    for ref, cand in zip(reference, candidate):
        report = match_detections(ref, cand, min_box_iou=MATCH_IOU, max_score_diff=1.0)
        found += report.matched
        total += max(len(ref), len(cand))
        references += len(ref)
        for r, c in report.pairs:
            ious.append(float(box_iou(ref.boxes[r:r + 1].astype(np.float64), cand.boxes[c:c + 1].astype(np.float64))[0, 0]))
            score_diffs.append(abs(float(ref.scores[r]) - float(cand.scores[c])))
        mask_ious.extend(report.mask_ious)
    mean = lambda values: float(np.mean(values)) if values else float("nan")
    return {"found %": 100.0 * found / references if references else 100.0,
            "matched %": 100.0 * found / total if total else 100.0, "box IoU": mean(ious),
            "|score diff|": mean(score_diffs), "mask IoU": mean(mask_ious)}


def _predict_images(model: Path, paths: list[Path], on_image: Callable[[], None] | None) -> list:
    from instseg_deploy.image_io import read_image
    from instseg_deploy.loading import load_predictor

    predictor = load_predictor("ort", model=model)
    out = []
    for path in paths:
        out.append(predictor(read_image(path)[0]))
        if on_image is not None:
            on_image()
    return out


def _coco_ap(model: Path, dataset, on_image: Callable[[], None] | None, evaluator: str = "faster-coco-eval") -> dict:
    from instseg_deploy.evaluation.coco_eval import evaluate, load_ground_truth
    from instseg_deploy.evaluation.inference import predict_dataset
    from instseg_deploy.loading import load_predictor

    detections = predict_dataset(load_predictor("ort", model=model), dataset, dataset.images, on_image)
    if not detections:
        return {"bbox AP": 0.0, "segm AP": 0.0}
    gt = load_ground_truth(dataset.annotations_path, evaluator)
    ids = [r.id for r in dataset.images]
    return {f"{t} AP": evaluate(gt, detections, t, evaluator, ids).metrics()["AP"] for t in ("bbox", "segm")}


def analyze(model: str | os.PathLike, calibration: list[Path], settings: QuantizeSettings,
            eval_images: list[Path] | None = None, dataset=None, cache_path: str | os.PathLike | None = None,
            on_stage: Callable[[str, int], Callable[[], None]] | None = None,
            on_calibration: Callable[[int, int], None] | None = None,
            on_skip: Callable[[Path, str], None] | None = None) -> tuple[dict, list[StageResult]]:
    """(FP32 metrics, one StageResult per stage plus "all stages").

    Give ``dataset`` (a CocoDataset) for AP, or ``eval_images`` for output error against FP32.
    ``on_stage(name, images)`` returns a per-image callback (progress bars). The calibration
    cache makes every stage reuse one set of ranges.
    """
    import onnx

    model = Path(model)
    nodes = onnx.load(str(model), load_external_data=False).graph.node
    progress = on_stage or (lambda name, n: None)
    count = len(dataset.images) if dataset is not None else len(eval_images or [])

    def measure(path: Path, name: str, reference=None):
        tick = progress(name, count)
        if dataset is not None:
            return _coco_ap(path, dataset, tick), None
        outputs = _predict_images(path, eval_images, tick)
        return (output_error(reference, outputs) if reference is not None else {}), outputs

    fp32_metrics, reference = measure(model, "fp32")
    results = []
    with tempfile.TemporaryDirectory(prefix="instseg-sensitivity-") as tmp:
        cache = cache_path or Path(tmp) / "calib.json"
        for stage in [*STAGES, ALL]:
            only = None if stage == ALL else stage_nodes(nodes, stage, QUANTIZED_OP_TYPES)
            if only is not None and not only:
                continue
            out = Path(tmp) / f"{stage.replace(' ', '_')}.onnx"
            try:
                report = quantize_int8(model, out, calibration, settings, cache, on_calibration, on_skip,
                                       only_nodes=only)
            except NothingToQuantize:
                continue  # the user's exclusions keep this whole stage float
            on_calibration = on_skip = None  # report calibration progress and problems once
            metrics, _ = measure(out, stage, reference)
            results.append(StageResult(stage, len(report.quantized), metrics))
    return fp32_metrics, results
