"""The generated shapes dataset: valid COCO, masks that match their boxes and areas, determinism,
splits, and refusals that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from instseg_deploy.data.synth import CLASS_NAMES, MIN_VISIBLE_AREA, generate
from instseg_deploy.errors import InstsegError

SMALL = (48, 96)  # image_size for tests that do not need realistic sizes


@pytest.fixture(scope="module")
def shapes50(tmp_path_factory) -> tuple[Path, COCO]:
    """50 images at the default sizes: enough for every category, format and size range."""
    out = tmp_path_factory.mktemp("synth") / "shapes"
    paths = generate(out, 50, seed=0)
    assert paths == {"all": out / "annotations.json"}
    return out, COCO(str(paths["all"]))


def _is_polygon(ann: dict) -> bool:
    return isinstance(ann["segmentation"], list)


def test_coco_structure(shapes50):
    out, coco = shapes50
    assert sorted(coco.imgs) == list(range(1, 51))
    assert sorted(coco.anns) == list(range(1, len(coco.anns) + 1))
    assert [(c["id"], c["name"], c["supercategory"]) for c in coco.loadCats(coco.getCatIds())] == [
        (i, name, "shape") for i, name in enumerate(CLASS_NAMES, start=1)
    ]
    sizes = set()
    for info in coco.imgs.values():
        image = cv2.imread(str(out / "images" / info["file_name"]))
        assert image is not None and image.shape == (info["height"], info["width"], 3)
        assert 256 <= info["height"] <= 512 and 256 <= info["width"] <= 512
        sizes.add((info["width"] > info["height"], info["width"] < info["height"]))
    assert sizes >= {(True, False), (False, True)}  # landscape and portrait both occur
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "images"]


def test_masks_match_bbox_and_area(shapes50):
    _, coco = shapes50
    for ann in coco.anns.values():
        info = coco.imgs[ann["image_id"]]
        assert ann["iscrowd"] == 0 and ann["area"] >= MIN_VISIBLE_AREA
        mask = coco.annToMask(ann)
        assert mask.shape == (info["height"], info["width"])
        if _is_polygon(ann):
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
            assert abs(int(mask.sum()) - ann["area"]) <= 0.01 * ann["area"] + 1
        else:
            assert ann["segmentation"]["size"] == [info["height"], info["width"]]
            assert isinstance(ann["segmentation"]["counts"], str)
            assert int(mask.sum()) == ann["area"]
        bbox = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask))).tolist()
        assert all(isinstance(v, float) for v in ann["bbox"])
        assert np.allclose(bbox, ann["bbox"], atol=1 if _is_polygon(ann) else 0), ann["id"]


def test_visible_masks_do_not_overlap(shapes50):
    _, coco = shapes50
    for image_id in coco.imgs:
        masks = [coco.annToMask(a) for a in coco.imgToAnns[image_id]]
        if masks:
            assert np.sum(masks, axis=0).max() <= 1


def test_formats_categories_and_sizes_all_occur(shapes50):
    _, coco = shapes50
    anns = list(coco.anns.values())
    polygons = sum(_is_polygon(a) for a in anns)
    assert 0.3 < polygons / len(anns) < 0.7
    assert {a["category_id"] for a in anns} == {1, 2, 3, 4}
    areas = np.array([a["area"] for a in anns])
    assert (areas < 32**2).any(), "no small instance"
    assert ((areas >= 32**2) & (areas < 96**2)).any(), "no medium instance"
    assert (areas >= 96**2).any(), "no large instance"
    # Ring masks exclude their hole: some ring's centre pixel is not part of its mask.
    rings = [a for a in anns if a["category_id"] == CLASS_NAMES.index("ring") + 1]
    centres_out = 0
    for a in rings:
        x, y, w, h = a["bbox"]
        centres_out += coco.annToMask(a)[int(y + h / 2), int(x + w / 2)] == 0
    assert centres_out > 0


def _read_all(out: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    images = {p.name: cv2.imread(str(p)) for p in sorted((out / "images").iterdir())}
    return (out / "annotations.json").read_bytes(), images


def test_deterministic_per_seed(tmp_path):
    a = _read_all(generate(tmp_path / "a", 6, seed=3, image_size=SMALL)["all"].parent)
    b = _read_all(generate(tmp_path / "b", 6, seed=3, image_size=SMALL)["all"].parent)
    c = _read_all(generate(tmp_path / "c", 6, seed=4, image_size=SMALL)["all"].parent)
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys() and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert a[0] != c[0]
    assert not any(np.array_equal(a[1][k], c[1][k]) for k in a[1])


def test_image_does_not_depend_on_set_size(tmp_path):
    few = _read_all(generate(tmp_path / "few", 2, seed=1, image_size=SMALL)["all"].parent)[1]
    more = _read_all(generate(tmp_path / "more", 4, seed=1, image_size=SMALL)["all"].parent)[1]
    assert all(np.array_equal(few[k], more[k]) for k in few)


@pytest.mark.parametrize(("splits", "expected"), [({"train": 0.8, "val": 0.2}, {"train": 8, "val": 2}),
                                                  ({"a": 3, "b": 2, "c": 5}, {"a": 3, "b": 2, "c": 5})])
def test_splits(tmp_path, splits, expected):
    out = tmp_path / "split"
    paths = generate(out, 10, seed=2, splits=splits, image_size=SMALL)
    assert paths == {name: out / name / "annotations.json" for name in expected}
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    names: dict[str, set[str]] = {}
    for name, path in paths.items():
        coco = COCO(str(path))
        assert sorted(coco.imgs) == list(range(1, expected[name] + 1))
        names[name] = {info["file_name"] for info in coco.imgs.values()}
        assert names[name] == {p.name for p in (out / name / "images").iterdir()}
    assert sum(len(n) for n in names.values()) == len(set().union(*names.values())) == 10


def test_progress_reports_every_image(tmp_path):
    calls = []
    generate(tmp_path / "p", 3, image_size=SMALL, progress=lambda *args: calls.append(args))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_existing_empty_directory_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    generate(tmp_path / "empty", 1, image_size=SMALL)
    assert (tmp_path / "empty" / "annotations.json").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 0}, "num_images must be an integer >= 1"),
        ({"splits": {"train": 0.8, "val": 0.3}}, "sum to 1"),
        ({"splits": {"train": 0.8, "val": -0.2}}, "in \\(0, 1\\]"),
        ({"splits": {"train": 8, "val": 1}}, "sum to num_images=10"),
        ({"splits": {"train": 8, "val": 0.2}}, "all fractions .* or all counts"),
        ({"splits": {"train": 0.99, "val": 0.01}}, "would get no image"),
        ({"splits": {}}, "splits is empty"),
        ({"splits": {"../up": 1.0}}, "not usable as a directory name"),
        ({"image_size": (512, 256)}, "min_side <= max_side"),
        ({"max_instances": 0}, "max_instances"),
    ],
)
def test_refuses_invalid_arguments(tmp_path, kwargs, message):
    args = {"num_images": 10, "image_size": SMALL} | kwargs
    with pytest.raises(InstsegError, match=message):
        generate(tmp_path / "out", **args)
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_out_dir(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InstsegError, match="already exists and is not empty"):
        generate(out, 2, image_size=SMALL)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary directory left


def test_failure_leaves_nothing_behind(tmp_path):
    def fail_at_third(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        generate(tmp_path / "out", 5, image_size=SMALL, splits={"a": 3, "b": 2}, progress=fail_at_third)
    assert list(tmp_path.iterdir()) == []


def test_annotations_are_plain_json(shapes50):
    out, _ = shapes50
    data = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
    assert set(data) >= {"images", "annotations", "categories"}
    assert data["images"][0]["file_name"] == "000001.jpg"
