"""`instseg train`: detectron2's matching/sampling/solver semantics, data checks, init, exact resume,
rank-0 checkpoints that our loader and exporter take, and a 2-process torchrun run (gloo).

Training runs here use tiny images (64-96 px) and a handful of iterations: they check the
machinery, not accuracy (the half-hour run in the README measures that).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from instseg_deploy.checkpoint import read_checkpoint
from instseg_deploy.config import load_config
from instseg_deploy.data.coco import DatasetError, load_coco_dataset
from instseg_deploy.errors import CheckpointError, ConfigError, InstsegError
from instseg_deploy.training.matcher import Matcher, pairwise_iou
from instseg_deploy.training.sampling import subsample_labels
from tiny_training import tiny_schedule

runner = CliRunner()

TEST_OVERRIDES = tiny_schedule(max_iter=6, steps=[4], warmup_iters=2, checkpoint_period=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Training steps on tiny images are dominated by thread synchronisation: on a shared
    2-core machine one thread is several times faster (and never slower by much)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """8 training + 4 validation images of 64-96 px: {split: (images dir, annotations)}."""
    from instseg_deploy.data.synth import generate

    out = tmp_path_factory.mktemp("train_data") / "shapes"
    paths = generate(out, 12, seed=3, splits={"train": 8, "val": 4}, image_size=(64, 96), max_instances=3)
    return {split: (ann.parent / "images", ann) for split, ann in paths.items()}


@pytest.fixture(scope="module")
def small_config(tmp_path_factory, tiny_config_path) -> Path:
    path = tmp_path_factory.mktemp("train_cfg") / "tiny_test.yaml"
    path.write_text(f'_BASE_: "{tiny_config_path}"\n' + TEST_OVERRIDES, encoding="utf-8")
    return path


def _train(config: Path, shapes, out: Path, **overrides):
    from instseg_deploy.training.trainer import TrainOptions, train

    after = overrides.pop("after_iteration", None)
    images, annotations = shapes["train"]
    # CPU unless a test says otherwise: exact resume holds on the CPU, not with CUDA's atomics.
    options = TrainOptions(out_dir=out, seed=overrides.pop("seed", 0), device=overrides.pop("device", "cpu"),
                           **overrides)
    return train(load_config(config), load_coco_dataset(images, annotations), None, options, after_iteration=after)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).state_dict


# --- matching and sampling ---------------------------------------------------------------

def test_pairwise_iou_is_zero_not_nan_for_empty_boxes():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 20.0, 20.0]])
    iou = pairwise_iou(a, b)
    assert torch.allclose(iou[0], torch.tensor([1.0, 50.0 / 150.0, 0.0]))
    assert torch.equal(iou[1], torch.zeros(3))


def test_rpn_matcher_thresholds_and_low_quality_matches():
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    quality = torch.tensor([[0.9, 0.5, 0.1, 0.0, 0.2],
                            [0.0, 0.6, 0.2, 0.25, 0.0]])  # gt 1's best IoU is only 0.6
    matches, labels = matcher(quality)
    assert matches.tolist() == [0, 1, 1, 1, 0]
    # 0.9 -> fg; 0.6 is gt 1's best -> fg despite < 0.7; 0.2/0.25 -> bg; 0.1 -> bg
    assert labels.tolist() == [1, 1, 0, 0, 0]
    no_low = Matcher([0.3, 0.7], [0, -1, 1])(quality)[1]
    assert no_low.tolist() == [1, -1, 0, 0, 0]
    roi = Matcher([0.5], [0, 1])(quality)[1]
    assert roi.tolist() == [1, 1, 0, 0, 0]


def test_matcher_without_ground_truth_labels_everything_with_the_first_label():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], True)(torch.zeros((0, 7)))
    assert matches.tolist() == [0] * 7 and labels.tolist() == [0] * 7


def test_subsample_labels_caps_positives_and_fills_with_negatives():
    labels = torch.tensor([1] * 30 + [0] * 100 + [-1] * 20)
    gen = torch.Generator().manual_seed(0)
    pos, neg = subsample_labels(labels, 64, 0.25, 0, gen)
    assert len(pos) == 16 and len(neg) == 48
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all() and len(set(pos.tolist())) == 16
    few = torch.tensor([1] * 3 + [0] * 100)
    pos, neg = subsample_labels(few, 64, 0.25, 0, gen)
    assert len(pos) == 3 and len(neg) == 61
    again = subsample_labels(labels, 64, 0.25, 0, torch.Generator().manual_seed(0))
    first = subsample_labels(labels, 64, 0.25, 0, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(again, first))


# --- mask targets and augmentation -------------------------------------------------------

def test_polygon_and_bitmap_targets_agree():
    from pycocotools import mask as mask_utils

    from instseg_deploy.training.targets import crop_and_resize

    square = [np.array([10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0])]  # covers pixels 10..29
    bitmap = mask_utils.decode(mask_utils.frPyObjects(square, 48, 64)).astype(np.uint8)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 20.0, 20.0]])
    for masks in ([square], [bitmap]):
        targets = crop_and_resize(masks, torch.tensor([0, 0]), boxes, 28)
        assert targets.shape == (2, 28, 28) and targets.dtype == torch.bool
        assert targets[0].all()  # the box is the square
        quarter = torch.zeros(28, 28, dtype=torch.bool)
        quarter[14:, 14:] = True  # box (0,0,20,20) sees the square's top-left quarter
        assert (targets[1] == quarter).float().mean() > 0.97


def test_flip_mirrors_image_boxes_and_masks(shapes, tiny_config_path):
    from pycocotools import mask as mask_utils

    from instseg_deploy.image_io import read_image
    from instseg_deploy.training.data import Augmentation, transform_record
    from instseg_deploy.training.records import load_training_records

    images, annotations = shapes["train"]
    records, _ = load_training_records(load_coco_dataset(images, annotations))
    aug = Augmentation.from_input_config(load_config(tiny_config_path).model.input)

    def full(mask, h, w):
        if isinstance(mask, np.ndarray):
            return mask.astype(bool)
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(mask, h, w))).astype(bool)

    kinds = set()
    for record in records:
        image, _ = read_image(record.path)
        plain, t_plain = transform_record(record, image, aug, 80, False)
        flipped, t_flip = transform_record(record, image, aug, 80, True)
        h, w = plain.shape[:2]
        assert min(h, w) == 80 and np.array_equal(flipped, plain[:, ::-1])
        expected = t_plain.boxes.clone()
        expected[:, [0, 2]] = w - t_plain.boxes[:, [2, 0]]
        assert torch.allclose(t_flip.boxes, expected, atol=1e-4)
        for m_plain, m_flip, box in zip(t_plain.masks, t_flip.masks, t_plain.boxes):
            kinds.add(isinstance(m_plain, np.ndarray))
            a, b = full(m_plain, h, w), full(m_flip, h, w)
            assert (a == b[:, ::-1]).mean() > 0.99
            _, xs = np.nonzero(a)  # the mask fills its (resized) box
            assert abs(xs.min() - box[0].item()) < 2 and abs(xs.max() + 1 - box[2].item()) < 2
    assert kinds == {True, False}  # both polygon and RLE instances were exercised


# --- training data problems ----------------------------------------------------------------

def _broken_copy(shapes, tmp_path, edit) -> tuple[Path, Path]:
    images, annotations = shapes["train"]
    data = json.loads(annotations.read_text())
    edit(data)
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return images, path


def test_bad_annotations_are_refused_with_their_ids_or_skipped(shapes, tmp_path):
    from instseg_deploy.training.records import load_training_records

    def edit(data):
        data["annotations"][0]["bbox"][2] = 0.0  # degenerate box
        data["annotations"][1]["segmentation"] = [[1.0, 2.0, 3.0]]  # no valid polygon
        data["images"].append({"id": 99, "file_name": "empty.jpg", "height": 64, "width": 64})

    images, path = _broken_copy(shapes, tmp_path, edit)
    (tmp_path / "empty.jpg").write_bytes((images / min(os.listdir(images))).read_bytes())
    first, second = (json.loads(path.read_text())["annotations"][i] for i in (0, 1))
    dataset = load_coco_dataset(images, path, check_files=False)
    with pytest.raises(DatasetError) as err:
        load_training_records(dataset, check_files=False)
    message = str(err.value)
    assert f"image id {first['image_id']} (annotation id {first['id']}): degenerate box" in message
    assert f"annotation id {second['id']}): no valid polygon" in message and "--skip-bad-images" in message
    records, report = load_training_records(dataset, skip_bad=True, check_files=False)
    assert {first["image_id"], second["image_id"]} == set(report.skipped_image_ids)
    assert report.empty_image_ids == [99] and 99 not in {r.image_id for r in records}
    assert len(records) == 8 - len(report.skipped_image_ids)


def test_unreadable_image_is_refused_or_skipped_by_id(shapes, tmp_path, small_config):
    images, annotations = shapes["train"]
    bad_dir = tmp_path / "images"
    bad_dir.mkdir()
    for p in images.iterdir():
        (bad_dir / p.name).write_bytes(p.read_bytes())
    victim = json.loads(annotations.read_text())["images"][2]
    (bad_dir / victim["file_name"]).write_bytes(b"not a jpeg")
    args = ["--config", str(small_config), "--images", str(bad_dir), "--annotations", str(annotations),
            "--max-iter", "2", "--seed", "0"]
    result = _invoke_train([*args, "--out", str(tmp_path / "refused")])
    assert result.exit_code == 2
    assert f"image id {victim['id']}: {victim['file_name']} is not a readable image" in result.output
    assert "Traceback" not in result.output
    result = _invoke_train([*args, "--out", str(tmp_path / "skipped"), "--skip-bad-images"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad image(s)" in result.output and (tmp_path / "skipped" / "model_final.pth").is_file()


def test_image_that_fails_to_decode_during_training_is_reported(shapes, tmp_path):
    """Headers can look fine while the pixels do not decode; the loader catches it by id."""
    import dataclasses

    from instseg_deploy.training.data import (
        Augmentation,
        BatchSampler,
        TrainingDataset,
        collate,
    )
    from instseg_deploy.training.records import load_training_records

    images, annotations = shapes["train"]
    records, _ = load_training_records(load_coco_dataset(images, annotations))
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(records[0].path.read_bytes()[:20])
    records[0] = dataclasses.replace(records[0], path=broken)
    aug = Augmentation((64,), 128, "choice", "horizontal", "BGR")
    refuse = TrainingDataset(records, aug, seed=0, skip_bad=False)
    sample = refuse[(0, 0)]
    assert sample.image is None and sample.error.startswith(f"image id {records[0].image_id}:")
    assert collate([sample, refuse[(1, 1)]], (0.0, 0.0, 0.0), 32).error == sample.error
    skip = TrainingDataset(records, aug, seed=0, skip_bad=True)
    sample = skip[(0, 0)]
    assert sample.image_id == records[1].image_id and sample.skipped[0][0] == records[0].image_id
    batches = iter(BatchSampler(records, 2, seed=0))
    assert all(len(next(batches)) == 2 for _ in range(10))


def test_batches_are_a_function_of_seed_and_position(shapes, tiny_config_path):
    """Worker processes, or starting at batch k, change nothing: what makes resume exact."""
    from instseg_deploy.training.data import (
        Augmentation,
        BatchSampler,
        TrainingDataset,
        build_loader,
    )
    from instseg_deploy.training.records import load_training_records

    images, annotations = shapes["train"]
    records, _ = load_training_records(load_coco_dataset(images, annotations))
    cfg = load_config(tiny_config_path).model
    dataset = TrainingDataset(records, Augmentation((64, 80), 128, "choice", "horizontal", "BGR"), seed=5,
                              skip_bad=False)

    def batches(workers: int, start: int, count: int):
        loader = build_loader(dataset, BatchSampler(records, 2, seed=5, start=start), cfg.pixel_mean, 32, workers)
        return [next(loader) for _ in range(count)]

    main, workers, later = batches(0, 0, 5), batches(1, 0, 5), batches(0, 3, 2)
    for a, b in zip(main, workers):
        assert torch.equal(a.images, b.images) and a.image_ids == b.image_ids
        assert all(torch.equal(x.boxes, y.boxes) for x, y in zip(a.targets, b.targets))
    for a, b in zip(main[3:], later):
        assert torch.equal(a.images, b.images) and a.image_ids == b.image_ids
    ranks = [iter(BatchSampler(records, 2, seed=5, rank=r, world_size=2)) for r in (0, 1)]
    positions = [{p for _ in range(4) for _, p in next(it)} for it in ranks]
    assert not positions[0] & positions[1]  # the ranks never share a sample


# --- solver ----------------------------------------------------------------------------------

def test_lr_schedule_matches_detectron2_warmup_multistep():
    from instseg_deploy.training.solver import SolverConfig, lr_factor

    cfg = SolverConfig(base_lr=0.02, steps=(600, 730, 5000), max_iter=800, warmup_iters=100, warmup_factor=0.001)
    assert lr_factor(0, cfg) == pytest.approx(0.001)
    assert lr_factor(50, cfg) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(100, cfg) == 1.0 and lr_factor(599, cfg) == 1.0
    assert lr_factor(600, cfg) == pytest.approx(0.1) and lr_factor(730, cfg) == pytest.approx(0.01)
    assert lr_factor(799, cfg) == pytest.approx(0.01)  # the step past MAX_ITER is ignored
    cosine = SolverConfig(base_lr=0.02, max_iter=100, warmup_iters=0, scheduler="WarmupCosineLR")
    assert lr_factor(50, cosine) == pytest.approx(0.5)


def test_parameter_groups_follow_detectron2(tiny_config_path):
    from instseg_deploy.modeling import MaskRCNN
    from instseg_deploy.training.solver import SolverConfig, build_optimizer

    model = MaskRCNN(load_config(tiny_config_path).model)
    cfg = SolverConfig(base_lr=0.02, weight_decay=1e-4, weight_decay_norm=0.0, bias_lr_factor=2.0)
    optimizer = build_optimizer(model, cfg)
    setting = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    norm = model.backbone.bottom_up.stem.conv1.norm
    assert setting[id(norm.weight)] == (0.02, 0.0) and setting[id(norm.bias)] == (0.04, 0.0)
    head = model.roi_heads.box_predictor.cls_score
    assert setting[id(head.weight)] == (0.02, 1e-4) and setting[id(head.bias)] == (0.04, 1e-4)
    assert len(setting) == sum(p.requires_grad for p in model.parameters())


# --- losses ---------------------------------------------------------------------------------

def _tiny_model(tiny_config_path):
    from instseg_deploy.modeling import MaskRCNN

    torch.manual_seed(0)
    return MaskRCNN(load_config(tiny_config_path).model).train()


def test_losses_are_finite_and_reach_every_trainable_parameter(tiny_config_path):
    from instseg_deploy.training.losses import compute_losses
    from instseg_deploy.training.targets import ImageTargets

    model = _tiny_model(tiny_config_path)
    images = torch.rand(2, 3, 96, 128) * 255
    sizes = torch.tensor([[96, 128], [90, 100]])
    polygon = [np.array([20.0, 20.0, 60.0, 20.0, 60.0, 70.0, 20.0, 70.0])]
    bitmap = np.zeros((90, 100), np.uint8)
    bitmap[10:40, 50:90] = 1
    targets = [ImageTargets(torch.tensor([[20.0, 20.0, 60.0, 70.0]]), torch.tensor([2]), [polygon]),
               ImageTargets(torch.tensor([[50.0, 10.0, 90.0, 40.0]]), torch.tensor([0]), [bitmap])]
    losses, stats = compute_losses(model, images, sizes, targets, torch.Generator().manual_seed(0))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert losses["loss_mask"].item() == pytest.approx(math.log(2), abs=0.05)  # untrained mask logits are ~0
    assert stats["roi_head/num_fg_samples"] >= 1
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert no_grad == []


def test_images_without_instances_only_teach_background(tiny_config_path):
    from instseg_deploy.training.losses import compute_losses
    from instseg_deploy.training.targets import ImageTargets

    model = _tiny_model(tiny_config_path)
    empty = ImageTargets(torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64), [])
    losses, stats = compute_losses(model, torch.rand(1, 3, 64, 64) * 255, torch.tensor([[64, 64]]), [empty])
    for name in ("loss_rpn_loc", "loss_box_reg", "loss_mask"):
        assert losses[name].item() == 0.0
    assert losses["loss_rpn_cls"] > 0 and losses["loss_cls"] > 0
    assert stats["rpn/num_pos_anchors"] == 0 and stats["rpn/num_neg_anchors"] == 256
    sum(losses.values()).backward()  # an all-background batch still backpropagates


# --- initialisation ---------------------------------------------------------------------------

def test_torchvision_resnet_weights_map_onto_the_backbone(tmp_path):
    import torchvision

    from instseg_deploy.config import config_from_tree
    from instseg_deploy.config.loader import merge_tree
    from instseg_deploy.modeling import MaskRCNN
    from instseg_deploy.training.init import initialise

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    for m in reference.modules():  # non-trivial statistics, so a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    tree = merge_tree(Path(__file__).parent.parent / "configs" / "Base-RCNN-FPN.yaml")
    tree["MODEL"]["MASK_ON"] = True
    tree["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] = 3
    tree["MODEL"]["RESNETS"]["STRIDE_IN_1X1"] = False
    model = MaskRCNN(config_from_tree(tree).model).eval()
    messages = initialise(model, path)
    assert "torchvision ResNet" in messages[0] and any("ImageNet's mean and std" in m for m in messages)
    # Compared in float64: in float32 the two convolution paths round differently by CPU kernel
    # (AVX-512 vs AVX2), which would hide a real mapping error or fail a right one.
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64)
    backbone, reference = model.backbone.bottom_up.double(), reference.double()
    with torch.no_grad():
        ours = backbone(x)
        t = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for i, name in enumerate(("res2", "res3", "res4", "res5")):
            t = getattr(reference, f"layer{i + 1}")(t)
            assert torch.allclose(ours[name], t, atol=1e-9, rtol=1e-9), name
    tree["MODEL"]["RESNETS"]["STRIDE_IN_1X1"] = True
    with pytest.raises(InstsegError, match="STRIDE_IN_1X1"):
        initialise(MaskRCNN(config_from_tree(tree).model), path)


def test_fine_tuning_to_another_class_count_reinitialises_the_heads(tmp_path, tiny_config_path):
    from instseg_deploy.checkpoint.writer import save_checkpoint
    from instseg_deploy.config import config_from_tree
    from instseg_deploy.modeling import MaskRCNN
    from instseg_deploy.training.init import initialise

    cfg = load_config(tiny_config_path)
    source = _tiny_model(tiny_config_path)
    save_checkpoint(tmp_path / "four.pth", source, cfg.raw, ("a", "b", "c", "d"))
    tree = dict(cfg.raw)
    tree["MODEL"] = {**cfg.raw["MODEL"], "ROI_HEADS": {**cfg.raw["MODEL"]["ROI_HEADS"], "NUM_CLASSES": 7}}
    torch.manual_seed(1)
    target = MaskRCNN(config_from_tree(tree).model)
    fresh = target.roi_heads.box_predictor.cls_score.weight.clone()
    messages = initialise(target, tmp_path / "four.pth")
    assert any("trained for 4 classes, the model has 7" in m and "roi_heads.mask_head.predictor" in m
               for m in messages), messages
    assert torch.equal(target.roi_heads.box_predictor.cls_score.weight, fresh)
    assert torch.equal(target.backbone.fpn_output2.weight, source.backbone.fpn_output2.weight)
    assert torch.equal(target.roi_heads.box_head.fc1.weight, source.roi_heads.box_head.fc1.weight)
    other = tmp_path / "other.pth"
    torch.save({"model": {"backbone.fpn_output2.weight": torch.zeros(5, 5, 3, 3)}}, other)
    with pytest.raises(CheckpointError, match="another architecture"):
        initialise(target, other)


# --- the training loop ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_config, shapes):
    out = tmp_path_factory.mktemp("run") / "straight"
    result = _train(small_config, shapes, out)
    return result, _weights(out / "model_final.pth")


def test_run_folder_has_detectron2_layout_and_feeds_our_loader(uninterrupted):
    from instseg_deploy.runtime.torch_model import load_model

    result, _ = uninterrupted
    out = result.out_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.yaml", "last_checkpoint", "metrics.json", "model_0000001.pth", "model_0000003.pth",
                     "model_0000005.pth", "model_final.pth"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    raw = torch.load(out / "model_final.pth", weights_only=True)  # plain tensors and containers only
    assert {"model", "trainer", "iteration", "instseg"} <= set(raw) and raw["iteration"] == 5
    assert {"iteration", "optimizer", "scheduler", "seed", "rng"} <= set(raw["trainer"])
    assert raw["instseg"]["class_names"] == ["disc", "square", "triangle", "ring"]
    ckpt = read_checkpoint(out / "model_final.pth")
    assert ckpt.kind == "instseg" and ckpt.extra["trainer"]["iteration"] == 5
    _, cfg = load_model(out / "config.yaml", out / "model_final.pth")
    assert cfg.class_names == ("disc", "square", "triangle", "ring")
    _, cfg = load_model(None, out / "model_final.pth")  # the embedded config is enough
    assert cfg.raw["SOLVER"]["MAX_ITER"] == 6 and cfg.raw["SEED"] == 0
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [5]  # log period 20 > 6 iterations: the last one
    assert all(math.isfinite(lines[0][k]) for k in ("total_loss", "loss_mask", "lr", "time"))


def test_resume_after_an_interruption_gives_the_same_weights(uninterrupted, tmp_path, small_config, shapes):
    """Tolerance: exactly equal (deterministic CPU run, same seed)."""
    _, straight = uninterrupted
    out = tmp_path / "interrupted"

    def crash(iteration: int) -> None:
        if iteration == 2:  # after the checkpoint of iteration 1, with iteration 2 done and lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(small_config, shapes, out, after_iteration=crash)
    assert (out / "last_checkpoint").read_text() == "model_0000001.pth"
    with pytest.raises(InstsegError, match="--resume"):
        _train(small_config, shapes, out)
    result = _train(small_config, shapes, out, resume=True)
    assert result.start_iter == 2
    resumed = _weights(out / "model_final.pth")
    assert set(resumed) == set(straight)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert different == []
    lines = [json.loads(line)["iteration"] for line in (out / "metrics.json").read_text().splitlines()]
    assert lines == [5]


def test_train_cli_exports_and_ort_matches_torch(uninterrupted, tmp_path, shapes):
    """The run folder feeds `instseg export`, and ONNX Runtime reproduces the trained model."""
    from instseg_deploy.cli.main import app
    from instseg_deploy.evaluation.parity import match_detections
    from instseg_deploy.image_io import read_image
    from instseg_deploy.runtime.factory import load_predictor

    result, _ = uninterrupted
    # Six iterations leave every score far below the default 0.05: compare the weak detections.
    config = tmp_path / "low_thresh.yaml"
    config.write_text(f'_BASE_: "{result.config_path}"\nMODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0.00001\n')
    onnx_path = tmp_path / "trained.onnx"
    out = runner.invoke(app, ["export", "--to", "onnx", "-c", str(config), "-w", str(result.final_checkpoint),
                              "--out", str(onnx_path)])
    assert out.exit_code == 0, out.output
    # the config's own (tiny) threshold, not predict's default: weak detections are what there is to compare
    torch_predictor = load_predictor("torch", config, result.final_checkpoint, score_thresh=None)
    ort_predictor = load_predictor("ort", model=onnx_path, score_thresh=None)
    images_dir, _ = shapes["val"]
    total = matched = 0
    worst = 1.0
    for path in sorted(images_dir.iterdir()):
        image, _ = read_image(path)
        ref, ours = torch_predictor(image), ort_predictor(image)
        report = match_detections(ref, ours)
        total += max(len(ref), len(ours))
        matched += report.matched
        worst = min(worst, report.min_mask_iou)
    assert total > 20 and matched / total >= 0.99 and worst >= 0.98  # a near-tie may swap at the top-100 cut


def _invoke_train(args: list[str]):
    """`instseg train ARGS`, as users run it."""
    from instseg_deploy.cli.main import app

    return runner.invoke(app, ["train", *args, "--device", "cpu"])


def test_torchrun_two_processes_train_and_write_one_checkpoint(tmp_path, small_config, shapes):
    images, annotations = shapes["train"]
    val_images, val_annotations = shapes["val"]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "instseg_deploy.cli.train", "--config", str(small_config), "--images", str(images),
           "--annotations", str(annotations), "--out", str(out), "--max-iter", "4", "--seed", "0",
           "--threads", "1", "--val-images", str(val_images), "--val-annotations", str(val_annotations),
           "--eval-period", "100", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Its own process group: on a time-out the workers go too, not only the launcher.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000001.pth", "model_0000003.pth",
                                                          "model_final.pth"]
    state = read_checkpoint(out / "model_final.pth").extra["trainer"]
    assert state["world_size"] == 2 and state["iteration"] == 3
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    evaluated = [line for line in lines if "segm/AP" in line]
    assert len(evaluated) == 1 and evaluated[0]["iteration"] == 3 and 0.0 <= evaluated[0]["segm/AP"] <= 100.0
    assert math.isfinite([line for line in lines if "total_loss" in line][-1]["total_loss"])


@pytest.mark.parametrize("gpus,requested,expected", [
    (2, "auto", "cuda:1"), (1, "auto", "cpu"), (0, "auto", "cpu"), (2, "cuda", "cuda:1"), (1, "cpu", "cpu"),
])
def test_torchrun_device_gives_each_local_process_its_own_gpu(monkeypatch, gpus, requested, expected):
    from instseg_deploy.training.trainer import _resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert str(_resolve_device(requested, world_size=2)) == expected


def test_torchrun_with_more_processes_than_gpus_is_refused_for_cuda(monkeypatch):
    from instseg_deploy.training.trainer import _resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="2 processes on this machine but 1 GPU"):
        _resolve_device("cuda", world_size=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        _resolve_device("cuda", world_size=1)
