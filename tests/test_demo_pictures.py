"""`instseg demo`'s pictures: val images as ground truth | prediction, linked from summary.md."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest

from instseg_deploy.cli.demo import write_pictures, write_summary
from instseg_deploy.data.coco import load_coco_dataset
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.processing.preprocess import PreprocessParams
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.runtime.torch_runner import TorchRunner

GAP = 6  # titled_panels' default


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, fixture_model):
    model, cfg = fixture_model
    predictor = Predictor(TorchRunner(model), PreprocessParams.from_model_config(cfg.model), cfg.class_names)
    dataset = load_coco_dataset(DEMO_DATA / "shapes_val" / "images", DEMO_DATA / "shapes_val" / "annotations.json")
    out = tmp_path_factory.mktemp("demo")
    return out, dataset, write_pictures(out / "pictures", dataset, predictor, "torch", count=2)


def test_each_picture_shows_ground_truth_beside_the_prediction(pictures):
    _, dataset, paths = pictures
    assert [p.name for p in paths] == [r.path.stem + ".png" for r in dataset.images[:2]]
    for path, record in zip(paths, dataset.images):
        picture = cv2.imread(str(path))
        image = cv2.imread(str(record.path))
        bar = picture.shape[0] - record.height
        assert picture.shape[1] == 2 * record.width + GAP and 10 < bar < 40
        truth = picture[bar:, :record.width].astype(int)
        found = picture[bar:, record.width + GAP:].astype(int)
        # Both panels are the image with something drawn on it, and they differ from each other.
        for panel in (truth, found):
            changed = np.abs(panel - image).max(axis=-1) > 40
            assert 0.01 < changed.mean() < 0.9
        assert np.abs(truth - found).max(axis=-1).mean() > 1


def test_summary_links_every_picture(pictures):
    out, dataset, paths = pictures
    metrics = {"torch": {t: {"AP": 50.0, "AP50": 75.0} for t in ("bbox", "segm")},
               "ort": {t: {"AP": math.nan, "AP50": 75.0} for t in ("bbox", "segm")}}
    write_summary(out, "config.yaml, model_final.pkl", dataset, metrics, paths)
    text = (out / "summary.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert [out / link for link in linked if link.startswith("pictures/")] == paths
    assert "| torch | 50.00 | 75.00 | 50.00 | 75.00 |" in text and "| ort | nan |" in text
    assert "disc, square, triangle, ring" in text and "[bench.md](bench.md)" in text
