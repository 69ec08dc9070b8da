"""Where does INT8 accuracy go? Quantize one network stage at a time and measure each.

For every stage (backbone, FPN, RPN head, box head, mask head) a model with only that stage
quantized is written and run with ONNX Runtime next to the FP32 model: with ground truth the
COCO box/mask AP, without it the output error against FP32 (share of FP32 detections found
again, their box IoU, score and mask differences). A last row quantizes everything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instseg_deploy.data.coco import CocoDataset
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
    from instseg_deploy.evaluation.parity import box_iou, match_detections

    found, total, references, ious, score_diffs, mask_ious = 0, 0, 0, [], [], []
    for ref, cand in zip(reference, candidate):
        report = match_detections(ref, cand, min_box_iou=MATCH_IOU, max_score_diff=1.0)
        found += report.matched
        total += max(len(ref), len(cand))
        references += len(ref)
        for r, c in report.pairs:
            pair_iou = box_iou(ref.boxes[r:r + 1].astype(np.float64), cand.boxes[c:c + 1].astype(np.float64))
            ious.append(float(pair_iou[0, 0]))
            score_diffs.append(abs(float(ref.scores[r]) - float(cand.scores[c])))
        mask_ious.extend(report.mask_ious)

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {"found %": 100.0 * found / references if references else 100.0,
            "matched %": 100.0 * found / total if total else 100.0, "box IoU": mean(ious),
            "|score diff|": mean(score_diffs), "mask IoU": mean(mask_ious)}


def _predict_images(model: Path, paths: list[Path], on_image: Callable[[], None] | None) -> list:
    from instseg_deploy.image_io import read_image
    from instseg_deploy.runtime.factory import load_predictor

    predictor = load_predictor("ort", model=model, score_thresh=None)  # every detection, as FP32 makes them
    out = []
    for path in paths:
        out.append(predictor(read_image(path)[0]))
        if on_image is not None:
            on_image()
    return out


def _coco_ap(model: Path, dataset, on_image: Callable[[], None] | None) -> dict:
    """{"bbox AP": ..., "segm AP": ...} of the ORT model on ``dataset``; 0 where it finds nothing
    (a stage quantized badly enough may)."""
    from instseg_deploy.evaluation.dataset_ap import IOU_TYPES, NoDetectionsError, dataset_ap
    from instseg_deploy.runtime.factory import load_predictor

    try:
        scored = dataset_ap(load_predictor("ort", model=model, score_thresh=None), dataset, on_image=on_image)
    except NoDetectionsError:
        return {f"{t} AP": 0.0 for t in IOU_TYPES}
    return {f"{t} AP": ap for t, ap in scored.ap().items()}


@dataclass(frozen=True, kw_only=True)
class SensitivityRequest:
    """What to analyse: the FP32 ``model``, its ``calibration`` images and quantization ``settings``;
    measured on ``dataset`` (a CocoDataset: COCO AP) or on ``eval_images`` (output error against FP32),
    exactly one of them. ``cache_path``: calibration cache (default: a temporary one)."""

    model: Path
    calibration: tuple[Path, ...]
    settings: QuantizeSettings
    dataset: CocoDataset | None = None
    eval_images: tuple[Path, ...] | None = None
    cache_path: Path | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.eval_images is None):
            raise ValueError("SensitivityRequest needs exactly one of dataset and eval_images")


def analyze(request: SensitivityRequest, *, on_stage: Callable[[str, int], Callable[[], None]] | None = None,
            on_calibration: Callable[[int, int], None] | None = None,
            on_skip: Callable[[Path, str], None] | None = None) -> tuple[dict, list[StageResult]]:
    """(FP32 metrics, one StageResult per stage plus "all stages").

    ``on_stage(name, images)`` returns a per-image callback (progress bars). The calibration
    cache makes every stage reuse one set of ranges.
    """
    import onnx

    model, dataset, eval_images = Path(request.model), request.dataset, request.eval_images
    nodes = onnx.load(str(model), load_external_data=False).graph.node
    progress = on_stage or (lambda name, n: None)
    count = len(dataset.images) if dataset is not None else len(eval_images)

    def measure(path: Path, name: str, reference=None):
        tick = progress(name, count)
        if dataset is not None:
            return _coco_ap(path, dataset, tick), None
        outputs = _predict_images(path, eval_images, tick)
        return (output_error(reference, outputs) if reference is not None else {}), outputs

    fp32_metrics, reference = measure(model, "fp32")
    results = []
    with tempfile.TemporaryDirectory(prefix="instseg-sensitivity-") as tmp:
        cache = request.cache_path or Path(tmp) / "calib.json"
        for stage in [*STAGES, ALL]:
            only = None if stage == ALL else stage_nodes(nodes, stage, QUANTIZED_OP_TYPES)
            if only is not None and not only:
                continue
            out = Path(tmp) / f"{stage.replace(' ', '_')}.onnx"
            try:
                report = quantize_int8(model, out, images=list(request.calibration), settings=request.settings,
                                       cache_path=cache, on_image=on_calibration, on_skip=on_skip, only_nodes=only)
            except NothingToQuantize:
                continue  # the user's exclusions keep this whole stage float
            on_calibration = on_skip = None  # report calibration progress and problems once
            metrics, _ = measure(out, stage, reference)
            results.append(StageResult(stage, len(report.quantized), metrics))
    return fp32_metrics, results
