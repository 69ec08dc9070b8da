"""The detection matcher, the oracle of every backend-parity test: what counts as "the same detection"."""

from __future__ import annotations

import numpy as np
import pytest

from instseg_deploy.evaluation.parity import box_iou, match_detections
from instseg_deploy.structures import Instances

BOX = [10.0, 20.0, 110.0, 70.0]


def detections(boxes, scores, classes, masks=None) -> Instances:
    return Instances((100, 200), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                     np.asarray(classes, np.int64), masks)


def test_identical_sets_match_one_to_one():
    ref = detections([BOX, [50, 50, 90, 95]], [0.9, 0.6], [1, 2])
    report = match_detections(ref, detections(ref.boxes[::-1], ref.scores[::-1], ref.classes[::-1]))
    assert report.pairs == [(0, 1), (1, 0)] and report.match_rate == 1.0


def test_class_mismatch_never_matches():
    ref = detections([BOX], [0.9], [1])
    assert match_detections(ref, detections([BOX], [0.9], [2])).matched == 0
    assert match_detections(ref, detections([BOX, BOX], [0.9, 0.9], [2, 1])).pairs == [(0, 1)]


def test_score_tolerance_is_respected():
    ref = detections([BOX], [0.5], [0])
    assert match_detections(ref, detections([BOX], [0.5009], [0])).matched == 1  # default 1e-3
    assert match_detections(ref, detections([BOX], [0.502], [0])).matched == 0
    assert match_detections(ref, detections([BOX], [0.498], [0])).matched == 0  # |difference|, both ways
    assert match_detections(ref, detections([BOX], [0.502], [0]), max_score_diff=1e-2).matched == 1


def test_box_iou_threshold_is_respected():
    ref = detections([BOX], [0.5], [0])
    shifted = [BOX[0] + 2, BOX[1], BOX[2] + 2, BOX[3]]  # IoU 98 / 102
    assert box_iou(np.array([BOX]), np.array([shifted]))[0, 0] == pytest.approx(98 / 102)
    assert match_detections(ref, detections([shifted], [0.5], [0])).matched == 0  # default 0.99
    assert match_detections(ref, detections([shifted], [0.5], [0]), min_box_iou=0.95).matched == 1


def test_greedy_in_reference_score_order_each_candidate_once():
    """The higher-scored reference picks first and takes its best-IoU candidate, even when that
    leaves a lower-scored reference without a partner (greedy, not an optimal assignment)."""
    near = [BOX[0] + 1, BOX[1], BOX[2] + 1, BOX[3]]
    ref = detections([BOX, BOX], [0.80, 0.90], [0, 0])  # index 1 scores higher
    cands = detections([BOX, near], [0.85, 0.85], [0, 0])
    report = match_detections(ref, cands, min_box_iou=0.97, max_score_diff=0.1)
    assert report.pairs == [(1, 0), (0, 1)]  # 0.90 first, the exact box; 0.80 gets the other
    alone = detections([BOX], [0.85], [0])
    report = match_detections(ref, alone, max_score_diff=0.1)
    assert report.pairs == [(1, 0)] and report.match_rate == 0.5  # a candidate is used once


@pytest.mark.parametrize("n_ref,n_cand,rate", [(0, 0, 1.0), (2, 0, 0.0), (0, 3, 0.0)])
def test_empty_sides(n_ref, n_cand, rate):
    ref = detections([BOX] * n_ref, [0.9] * n_ref, [0] * n_ref)
    cand = detections([BOX] * n_cand, [0.9] * n_cand, [0] * n_cand)
    report = match_detections(ref, cand)
    assert (report.num_reference, report.num_candidate, report.matched) == (n_ref, n_cand, 0)
    assert report.match_rate == rate and report.min_mask_iou == 1.0


def test_match_rate_counts_the_larger_side():
    ref = detections([BOX], [0.9], [0])
    report = match_detections(ref, detections([BOX, [0, 0, 5, 5]], [0.9, 0.3], [0, 0]))
    assert report.matched == 1 and report.match_rate == 0.5


def test_mask_iou_is_recorded_for_matched_pairs():
    a = np.zeros((1, 100, 200), bool)
    a[0, 20:70, 10:110] = True
    b = a.copy()
    b[0, 20:70, 60:110] = False  # half of it
    report = match_detections(detections([BOX], [0.9], [0], a), detections([BOX], [0.9], [0], b))
    assert report.mask_ious == [pytest.approx(0.5)] and report.min_mask_iou == pytest.approx(0.5)
    assert match_detections(detections([BOX], [0.9], [0], a), detections([BOX], [0.9], [0])).mask_ious == []
