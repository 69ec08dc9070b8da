"""Overlays: labels inside the image and off each other, ground truth drawn like predictions, titled panels."""

from __future__ import annotations

import itertools

import numpy as np
from pycocotools import mask as mask_utils

from instseg_deploy.structures import Instances
from instseg_deploy.visualize import (
    FONT_SCALE,
    MIN_FONT_SCALE,
    class_color,
    draw_instances,
    fit_font_scale,
    ground_truth_instances,
    label_size,
    place_labels,
    titled_panels,
)

NAMES = ("disc", "square", "triangle", "ring")
H, W = 160, 240


def _instances(boxes, scores=None) -> Instances:
    boxes = np.asarray(boxes, np.float32)
    n = len(boxes)
    scores = np.linspace(0.99, 0.5, n).astype(np.float32) if scores is None else np.asarray(scores, np.float32)
    return Instances((H, W), boxes, scores, np.arange(n, dtype=np.int64) % len(NAMES), mask_format="none")


def _sizes(instances: Instances) -> list[tuple[int, int]]:
    return [label_size(f"{NAMES[c]} {s:.2f}", 0.4) for c, s in zip(instances.classes, instances.scores)]


def _inside(rect) -> bool:
    x0, y0, x1, y1 = rect
    return 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_label_goes_above_its_box_when_there_is_room():
    boxes = [[40, 60, 120, 130]]
    (rect,) = place_labels(np.array(boxes), _sizes(_instances(boxes)), (H, W))
    assert rect[3] == 60 and rect[0] == 40


def test_labels_at_the_top_and_right_edges_stay_inside():
    # Top-left corner, top edge against the right border, a box running past the right edge, one at the bottom.
    boxes = [[0, 0, 50, 40], [200, 0, 239, 30], [220, 60, 300, 100], [10, 130, 60, 159]]
    rects = place_labels(np.array(boxes), _sizes(_instances(boxes)), (H, W))
    assert all(_inside(r) for r in rects), rects
    assert rects[0][1] == 0 and rects[1][1] == 0  # no room above: inside the box's top
    assert rects[1][2] == W and rects[2][2] == W  # pushed left, not clipped


def test_crowded_labels_do_not_overlap():
    # Ten nearly identical detections: every label wants the same spot above the first box.
    boxes = [[80 + 3 * i, 50 + 2 * i, 180 + 3 * i, 140 + 2 * i] for i in range(10)]
    rects = place_labels(np.array(boxes), _sizes(_instances(boxes)), (H, W))
    assert all(_inside(r) for r in rects), rects
    assert not [(a, b) for a, b in itertools.combinations(rects, 2) if _overlap(a, b)]
    assert rects[0][3] == 50  # the best detection keeps the place above its box


def test_draw_instances_paints_labels_where_they_are_placed():
    boxes = [[0, 0, 60, 40], [5, 2, 65, 42], [190, 100, 239, 159]]
    instances = _instances(boxes, [0.9, 0.8, 0.7])
    canvas = draw_instances(np.zeros((H, W, 3), np.uint8), instances, NAMES)
    rects = place_labels(instances.boxes, _sizes(instances), (H, W))
    for (x0, y0, x1, y1), cls in zip(rects, instances.classes):
        # The label's background corners (the text never reaches them) carry the class colour.
        for x, y in ((x0, y0), (x1 - 1, y1 - 1)):
            assert tuple(canvas[y, x]) == class_color(int(cls)), (x, y)
        assert (canvas[y0:y1, x0:x1] == 0).all(axis=-1).any()  # black text is drawn on it


def test_long_label_is_shrunk_to_the_image_width():
    text = "a very long class name 0.99"
    scale = fit_font_scale(text, 120)
    assert scale < FONT_SCALE and label_size(text, scale)[0] <= 120
    assert fit_font_scale("disc 0.99", 100) == FONT_SCALE


def test_a_shrunk_label_fits_at_every_width():
    # Text width is a step function of the scale (whole-pixel glyph advances): a scale in proportion to
    # the overflow can still overflow by a few pixels. Only the readable minimum may not fit.
    for text in ("a very long class name 0.99", "traffic light 0.51", "person 0.87"):
        for width in range(40, 200):
            scale = fit_font_scale(text, width)
            assert label_size(text, scale)[0] <= width or scale == MIN_FONT_SCALE, (text, width, scale)


def test_ground_truth_from_polygons_and_rle():
    square = np.zeros((H, W), np.uint8)
    square[20:60, 30:90] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode("ascii")  # as annotation files hold it
    annotations = [
        {"category_id": 7, "bbox": [30, 20, 60, 40], "segmentation": rle},
        {"category_id": 3, "bbox": [100, 80, 40, 40], "segmentation": [[100, 80, 140, 80, 140, 120, 100, 120]]},
        {"category_id": 99, "bbox": [0, 0, 5, 5], "segmentation": [[0, 0, 5, 0, 5, 5]]},  # not a known category
    ]
    truth = ground_truth_instances(annotations, (H, W), category_ids=[3, 7])
    assert len(truth) == 2 and truth.classes.tolist() == [1, 0]
    np.testing.assert_array_equal(truth.boxes, [[30, 20, 90, 60], [100, 80, 140, 120]])
    assert truth.masks.shape == (2, H, W) and truth.masks[0].sum() == 40 * 60
    assert truth.masks[1, 90, 110] and not truth.masks[1, 50, 50] and 1500 < truth.masks[1].sum() < 1800
    canvas = draw_instances(np.zeros((H, W, 3), np.uint8), truth, ("a", "b"), show_scores=False)
    assert canvas[40, 60].any() and not canvas[140, 200].any()  # the mask is tinted, the background is not
    assert len(ground_truth_instances([], (H, W), [3, 7])) == 0


def test_titled_panels_sit_side_by_side_under_their_titles():
    left = np.full((50, 80, 3), 10, np.uint8)
    right = np.full((40, 60, 3), 200, np.uint8)
    out = titled_panels([("ground truth", left), ("prediction", right)], gap=6)
    bar = out.shape[0] - 50
    assert out.shape[1] == 80 + 6 + 60 and bar > 10
    assert (out[bar:, :80] == 10).all() and (out[bar:bar + 40, 86:] == 200).all()
    assert (out[bar + 40:, 86:] == 255).all()  # the shorter panel is padded, not stretched
    assert (out[:bar, :80] > 200).any()  # white title text on the dark bar
