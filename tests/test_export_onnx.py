"""Whole-detector ONNX export and the ONNX Runtime backend: parity with the torch backend."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
import torch

from golden import D2, golden_images
from instseg_deploy.class_names import default_class_names
from instseg_deploy.config import load_config
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import InstsegError
from instseg_deploy.evaluation.parity import match_detections
from instseg_deploy.export.onnx_export import export_onnx
from instseg_deploy.model_file.metadata import METADATA_KEY
from instseg_deploy.modeling import build_model
from instseg_deploy.ops.roi_align_contract import ONNX_DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION
from instseg_deploy.runtime.factory import load_predictor

GOLDEN = golden_images()


@pytest.fixture(scope="module")
def torch_predictor():
    model_dir = DEMO_DATA / "shapes_r50"
    # the model's own threshold (0.05), as the golden comparisons below count detections at it
    return load_predictor("torch", model_dir / "config.yaml", model_dir / "model_final.pkl", score_thresh=None)


@pytest.mark.parametrize("variant", ["raw", "pasted", "plugin"])
def test_ort_matches_torch_on_golden_images(exported_onnx, torch_predictor, variant):
    """Standard-op graphs with host or in-graph mask pasting, and the plugin-flavoured graph
    (RoIAlign plugin node run by its CPU twin): the same detections as the torch backend."""
    ort_predictor = load_predictor("ort", model=exported_onnx[variant], score_thresh=None)
    matched = total = 0
    worst = 1.0
    for _, path in GOLDEN:  # images of many sizes through one dynamic-shape file
        image = cv2.imread(str(path))
        ref, ours = torch_predictor(image), ort_predictor(image)
        report = match_detections(ref, ours)
        matched += report.matched
        total += max(len(ref), len(ours))
        worst = min(worst, report.min_mask_iou)
    assert total > 300
    assert matched / total >= 0.995
    assert worst >= 0.98


def test_batches_of_different_sizes(exported_onnx, torch_predictor):
    """Batch 2 with different image sizes: each image is padded bottom/right to the batch's
    common size, exactly as detectron2's ImageList does, in both backends."""
    images = [cv2.imread(str(GOLDEN[i][1])) for i in (0, 15)]
    assert images[0].shape != images[1].shape
    ort_predictor = load_predictor("ort", model=exported_onnx["pasted"], score_thresh=None)
    for ref, ours in zip(torch_predictor.predict(images), ort_predictor.predict(images)):
        assert len(ref) > 5 and match_detections(ref, ours).match_rate == 1.0
        assert ours.masks.shape[1:] == ref.masks.shape[1:]


@pytest.mark.parametrize("variant", ["raw", "pasted", "plugin"])
def test_nms_score_threshold_is_explicit(exported_onnx, variant):
    """TensorRT's INMSLayer defaults an absent score_threshold to 0.0 (export/trt/NMS.md): every NMS node
    carries float32's lowest value instead, which filters nothing (the golden parity tests above run it)."""
    from onnx import numpy_helper

    proto = onnx.load(str(exported_onnx[variant]))
    initializers = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type == "NonMaxSuppression"]
    assert len(nodes) == 2  # the RPN's and the box head's
    for node in nodes:
        assert len(node.input) == 5 and node.input[4] in initializers, node.name
        threshold = initializers[node.input[4]]
        assert threshold.dtype == np.float32 and threshold.tolist() == [float(np.finfo(np.float32).min)]


def test_plugin_flavour_has_one_node_per_pooler(exported_onnx):
    proto = onnx.load(str(exported_onnx["plugin"]))
    nodes = [n for n in proto.graph.node if n.op_type == OP_TYPE]
    assert len(nodes) == 2  # box pooler and mask pooler
    assert all(n.domain == ONNX_DOMAIN for n in nodes) and "RoiAlign" not in {n.op_type for n in proto.graph.node}
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert attrs[0]["plugin_version"] == PLUGIN_VERSION.encode()
    assert attrs[0]["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
    assert list(attrs[0]["featmap_strides"]) == [4, 8, 16, 32] and attrs[0]["aligned"] == 1
    assert {a["output_size"] for a in attrs} == {7, 14}


def test_metadata_makes_the_file_self_describing(exported_onnx):
    proto = onnx.load(str(exported_onnx["raw"]))
    onnx.checker.check_model(proto)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert meta["num_classes"] == 4 and len(meta["class_names"]) == 4
    assert meta["preprocess"]["input_format"] == "BGR" and meta["preprocess"]["min_size"] == 320
    assert meta["preprocess"]["size_divisibility"] == 32 and meta["postprocess"]["score_thresh"] == 0.05
    assert "MODEL:" in meta["config"] and meta["producer"].startswith("instseg-deploy")
    assert [i.name for i in proto.graph.input] == ["images", "image_sizes"]
    ops = {n.op_type for n in proto.graph.node}
    assert {"RoiAlign", "NonMaxSuppression", "TopK"} <= ops


def _export(config_path, tmp_path, **kwargs):
    cfg = load_config(config_path)
    cfg.class_names = default_class_names(cfg.model.num_classes)
    torch.manual_seed(0)  # random weights: the same model whatever ran before in this process
    return cfg, export_onnx(build_model(cfg.model), cfg, tmp_path / "m.onnx", **kwargs).path


def test_fixed_batch_and_size_with_other_class_count(tmp_path, tiny_config_path):
    custom = tmp_path / "seven.yaml"
    custom.write_text(f'_BASE_: "{tiny_config_path}"\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 7\n'
                      "    SCORE_THRESH_TEST: 0.0\nINPUT:\n  MIN_SIZE_TEST: 256\n  MAX_SIZE_TEST: 448\n")
    cfg, path = _export(custom, tmp_path, batch=2, size=(256, 448), simplify=False)
    proto = onnx.load(str(path))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 256, 448]
    predictor = load_predictor("ort", model=path, score_thresh=None)  # the config's 0.0: every detection
    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    results = predictor.predict([image, image, image])  # runs as batches of 2, the last one padded
    assert len(results) == 3 and len(results[0]) > 0
    assert set(np.unique(np.concatenate([r.classes for r in results]))) <= set(range(7))
    with pytest.raises(InstsegError, match="fixed input size"):
        predictor(np.zeros((600, 300, 3), np.uint8))


@pytest.mark.parametrize("config", ["mask_rcnn_R_50_FPN_3x.yaml", "mask_rcnn_R_101_FPN_3x.yaml"])
def test_full_size_configs_export(tmp_path, config):
    _, path = _export(D2.parent.parent.parent / "configs" / "COCO-InstanceSegmentation" / config, tmp_path,
                      simplify=False)
    assert path.stat().st_size > 150 * 2**20  # real weights inside
    runner = load_predictor("ort", model=path).runner
    assert [o.name for o in runner.session.get_outputs()][:3] == ["boxes", "scores", "classes"]


def test_bad_export_requests(tmp_path, fixture_model):
    model, cfg = fixture_model
    with pytest.raises(InstsegError, match="opset >= 16"):
        export_onnx(model, cfg, tmp_path / "a.onnx", opset=11)
    with pytest.raises(InstsegError, match="multiple of 32"):
        export_onnx(model, cfg, tmp_path / "a.onnx", size=(300, 320))
    assert not list(tmp_path.iterdir())


def test_failed_export_leaves_nothing(tmp_path, fixture_model, monkeypatch):
    model, cfg = fixture_model

    def broken_check(*args, **kwargs):
        raise RuntimeError("simulated failure after tracing")

    monkeypatch.setattr(onnx.checker, "check_model", broken_check)
    with pytest.raises(RuntimeError, match="simulated"):
        export_onnx(model, cfg, tmp_path / "m.onnx", simplify=False)
    assert not list(tmp_path.iterdir())


def test_unreadable_and_foreign_models(tmp_path, exported_onnx):
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(exported_onnx["raw"].read_bytes()[:5000])
    with pytest.raises(InstsegError, match="not a readable ONNX model"):
        load_predictor("ort", model=truncated)
    text = tmp_path / "x.onnx"
    text.write_text("hello")
    with pytest.raises(InstsegError, match="not a readable ONNX model"):
        load_predictor("ort", model=text)
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load(str(exported_onnx["raw"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    with pytest.raises(InstsegError, match="no instseg metadata"):
        load_predictor("ort", model=foreign)
    # ... usable with explicit flags: preprocessing and classes from the detectron2 config
    # at the config's threshold (a shapes model scores a photo low): it is the config that must take effect
    predictor = load_predictor("ort", model=foreign, config=DEMO_DATA / "shapes_r50" / "config.yaml",
                               score_thresh=None)
    assert len(predictor(cv2.imread(str(GOLDEN[-1][1])))) > 0
