"""Reading detectron2's golden outputs (tests/data/detectron2/outputs/*.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.structures import Instances

D2 = Path(__file__).parent / "data" / "detectron2"


def golden_images() -> list[tuple[str, Path]]:
    """(stem, image path) for every image that has golden outputs."""
    images = {p.stem: p for p in (D2 / "photos").iterdir()}
    images.update({p.stem: p for p in (DEMO_DATA / "shapes_val" / "images").iterdir()})
    return [(p.stem, images[p.stem]) for p in sorted((D2 / "outputs").glob("*.npz"))]


def load_golden(stem: str) -> tuple[Instances, dict]:
    z = np.load(D2 / "outputs" / f"{stem}.npz", allow_pickle=True)
    h, w = (int(v) for v in z["image_hw"])
    rles = [{"size": [h, w], "counts": str(c).encode()} for c in z["masks_rle"]]
    masks = (np.transpose(mask_utils.decode(rles), (2, 0, 1)).astype(bool) if rles
             else np.zeros((0, h, w), bool))
    inst = Instances((h, w), z["boxes"].astype(np.float32), z["scores"].astype(np.float32),
                     z["classes"].astype(np.int64), masks, z["mask_probs"], z["boxes_net"])
    return inst, {k: z[k] for k in ("proposals", "objectness", "input_hw")}
