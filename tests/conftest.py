from __future__ import annotations

from pathlib import Path

import pytest

from instseg_deploy.demo_data import DEMO_DATA

DATA = Path(__file__).parent / "data"
D2 = DATA / "detectron2"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def d2_dir() -> Path:
    return D2


@pytest.fixture(scope="session")
def fixture_model():
    """The detectron2-trained shapes_r50 model, loaded from the model-zoo style .pkl."""
    from instseg_deploy.runtime.torch_model import load_model

    return load_model(DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl")


@pytest.fixture(scope="session")
def tiny_config_path() -> Path:
    return REPO / "configs" / "tiny_mask_rcnn.yaml"


@pytest.fixture(scope="session")
def exported_onnx(tmp_path_factory, fixture_model):
    """The fixture model exported with dynamic batch and size: standard ops with raw or pasted
    masks, and the plugin flavour (one RoIAlign plugin node): {"raw"|"pasted"|"plugin": path}."""
    from instseg_deploy.export.onnx_export import export_onnx

    model, cfg = fixture_model
    out = tmp_path_factory.mktemp("onnx")
    paths = {masks: export_onnx(model, cfg, out / f"{masks}.onnx", masks=masks).path for masks in ("raw", "pasted")}
    paths["plugin"] = export_onnx(model, cfg, out / "plugin.onnx", roi_align="plugin").path
    return paths
