"""Mask formats (dense, rle, cropped, none): exactly the same pixels whichever is asked for.

The reference is pycocotools' encoding of the dense masks; RLE is computed from each box region
alone, so these tests aim at the cases where a region-based computation could go wrong: regions at
the image edges, spanning the full height (runs joining across columns), empty and full masks.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from golden import golden_images, load_golden
from instseg_deploy.coco_format import instances_to_coco
from instseg_deploy.data.coco import load_coco_dataset
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.evaluation.dataset_ap import dataset_ap
from instseg_deploy.processing.masks import (
    as_format,
    cropped_rle,
    decode_rles,
    dense_from_cropped,
    encode_dense,
    make_masks,
    paste_masks,
)
from instseg_deploy.processing.preprocess import PreprocessParams
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.runtime.torch_runner import TorchRunner
from instseg_deploy.structures import MASK_FORMATS, CroppedMask, Instances


def _regions(rng: np.random.Generator, height: int, width: int):
    """Cropped masks over random regions, plus the edge cases by construction."""
    cases = [
        CroppedMask((0, 0), np.ones((height, width), bool)),  # everything on: one run, no trailing zeros
        CroppedMask((0, 0), np.zeros((height, width), bool)),  # nothing on
        # full-height columns: runs join across columns
        CroppedMask((0, max(width - 3, 0)), np.ones((height, min(2, width)), bool)),
        CroppedMask((height - 1, width - 1), np.ones((1, 1), bool)),  # last pixel only
        CroppedMask((0, 0), np.ones((1, 1), bool)),  # first pixel only: the first count is 0
    ]
    for _ in range(200):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        h, w = int(rng.integers(1, height - top + 1)), int(rng.integers(1, width - left + 1))
        cases.append(CroppedMask((top, left), rng.random((h, w)) < rng.uniform(0.05, 0.95)))
    return cases


def test_region_rle_is_pycocotools_encoding_of_the_dense_mask():
    rng = np.random.default_rng(0)
    for height, width in ((17, 23), (1, 9), (9, 1), (64, 48)):
        cases = _regions(rng, height, width)
        dense = dense_from_cropped(cases, height, width)
        expected = encode_dense(dense)
        for case, mask, want in zip(cases, dense, expected):
            got = cropped_rle(case, height, width)
            assert got == want, (height, width, case.offset, case.mask.shape)
            np.testing.assert_array_equal(decode_rles([got], height, width)[0], mask)


@pytest.mark.parametrize("stem,path", golden_images()[:8])
def test_every_format_gives_the_dense_pixels_on_golden_images(stem, path):
    """detectron2's own 28x28 probabilities and boxes of each golden image through every format."""
    golden, _ = load_golden(stem)
    h, w = golden.image_size
    dense = paste_masks(golden.mask_probs, golden.boxes, h, w)
    rles = make_masks(golden.mask_probs, golden.boxes, h, w, "rle")
    cropped = make_masks(golden.mask_probs, golden.boxes, h, w, "cropped")
    assert make_masks(golden.mask_probs, golden.boxes, h, w, "none") is None
    assert rles == encode_dense(dense)
    np.testing.assert_array_equal(dense_from_cropped(cropped, h, w), dense)
    for c in cropped:  # a cropped mask never reaches beyond the image
        assert c.offset[0] + c.mask.shape[0] <= h and c.offset[1] + c.mask.shape[1] <= w
    # Conversions between held formats (and pasting afresh from "none") keep the pixels.
    for held, masks in (("dense", dense), ("rle", rles), ("cropped", cropped), ("none", None)):
        inst = Instances((h, w), golden.boxes, golden.scores, golden.classes, masks, golden.mask_probs,
                         golden.boxes_net, mask_format=held)
        assert as_format(inst, "rle") == rles
        np.testing.assert_array_equal(as_format(inst, "dense"), dense)
        np.testing.assert_array_equal(dense_from_cropped(as_format(inst, "cropped"), h, w), dense)


def test_select_keeps_list_formats_aligned():
    rng = np.random.default_rng(1)
    cases = _regions(rng, 20, 30)[:6]
    inst = Instances((20, 30), np.zeros((6, 4), np.float32), np.linspace(1, 0.5, 6, dtype=np.float32),
                     np.arange(6), cases, np.zeros((6, 28, 28), np.float32), np.zeros((6, 4), np.float32),
                     mask_format="cropped")
    picked = inst.select(np.array([True, False, True, False, False, True]))
    assert [c.offset for c in picked.masks] == [cases[0].offset, cases[2].offset, cases[5].offset]
    assert picked.mask_format == "cropped" and len(picked) == 3


def test_unknown_mask_format_is_refused(fixture_model):
    model, cfg = fixture_model
    with pytest.raises(ValueError, match="mask format must be one of"):
        Predictor(TorchRunner(model), PreprocessParams.from_model_config(cfg.model), cfg.class_names,
                  mask_format="polygons")


class _ReplayRunner:
    """Runs the wrapped runner once per distinct batch and replays it: the formats then differ only
    in post-processing, and the test stays fast."""

    def __init__(self, runner):
        self.runner, self.cache = runner, {}
        self.name, self.max_batch, self.pad_to = runner.name, runner.max_batch, runner.pad_to

    def run(self, batch):
        key = batch.images.tobytes()
        if key not in self.cache:
            self.cache[key] = self.runner.run(batch)
        return self.cache[key]


def test_predictor_formats_give_identical_results_and_ap(fixture_model):
    """The fixture model on the shapes val set: every format's COCO results (RLE strings included)
    and AP are identical to dense's; "none" writes boxes only."""
    model, cfg = fixture_model
    runner = _ReplayRunner(TorchRunner(model))
    dataset = load_coco_dataset(DEMO_DATA / "shapes_val" / "images", DEMO_DATA / "shapes_val" / "annotations.json")
    images = dataset.images[:10]
    results, aps = {}, {}
    for fmt in MASK_FORMATS:
        predictor = Predictor(runner, PreprocessParams.from_model_config(cfg.model), cfg.class_names,
                              score_thresh=0.05, mask_format=fmt)
        out = []
        for record in images:
            instances = predictor(cv2.imread(str(record.path)))
            assert instances.mask_format == fmt
            out.extend(instances_to_coco(instances, record.id, dataset.category_ids))
        results[fmt] = out
        aps[fmt] = dataset_ap(predictor, dataset, images).ap()
    assert results["dense"] and all("segmentation" in r for r in results["dense"])
    for fmt in ("rle", "cropped"):
        assert results[fmt] == results["dense"]
        assert aps[fmt] == aps["dense"]
    assert [{k: v for k, v in r.items() if k != "segmentation"} for r in results["dense"]] == results["none"]
    assert aps["none"] == {"bbox": aps["dense"]["bbox"]}


def test_native_paste_is_the_numpy_paste_bit_for_bit():
    """ops/csrc/mask_paste.cpp (what make_masks uses when it builds) against the numpy reference: random
    boxes, boxes spanning the whole image height (runs joining across columns), at the edges, tiny ones."""
    from instseg_deploy.processing.masks import native_paste, paste_cropped, paste_native

    if native_paste() is None:
        pytest.skip("the native mask library cannot be built here (no C++ compiler)")
    rng = np.random.default_rng(5)
    for height, width in ((97, 131), (40, 23), (300, 200)):
        n = 80
        probs = rng.random((n, 28, 28), dtype=np.float32)
        probs[:10] = (probs[:10] > 0.3).astype(np.float32)  # saturated maps: long runs, full columns
        x0 = rng.uniform(0, width - 1, n)
        y0 = rng.uniform(0, height - 1, n)
        boxes = np.stack([x0, y0, np.minimum(x0 + rng.uniform(0.3, width, n), width),
                          np.minimum(y0 + rng.uniform(0.3, height, n), height)], 1).astype(np.float32)
        boxes[:10, 1], boxes[:10, 3] = 0.0, height  # whole columns
        boxes[10:14] = [[0, 0, width, height]] * 4
        for threshold in (0.5, 0.3, 0.7):
            reference = paste_cropped(probs, boxes, height, width, threshold)
            assert paste_native(probs, boxes, height, width, "rle", threshold) == \
                [cropped_rle(c, height, width) for c in reference]
            for ours, ref in zip(paste_native(probs, boxes, height, width, "cropped", threshold), reference):
                assert ours.offset == ref.offset
                np.testing.assert_array_equal(ours.mask, ref.mask)
