"""The calibration cache: measured activation ranges, reused while model and images are unchanged.

The file is ONNX Runtime's own calibration-cache JSON (``onnxruntime.quantization`` reads it
with ``calibration_cache_path``) plus one ``instseg`` block: a fingerprint of what produced
the ranges (model file digest, calibration method and options, image set digest). A cache
whose fingerprint differs is stale and is recomputed, never silently reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from instseg_deploy.atomic import write_text
from instseg_deploy.model_file.sidecar import file_sha256

FINGERPRINT_KEY = "instseg"


def file_digest(path: str | os.PathLike) -> str:
    """A file's SHA-256, shortened: identifies the model a calibration cache belongs to."""
    return file_sha256(path)[:16]


def load_ranges(path: str | os.PathLike, fingerprint: dict[str, Any]):
    """The cached ``TensorsData`` when ``path`` holds ranges for exactly ``fingerprint``, else None."""
    from onnxruntime.quantization.calibrate import TensorsData

    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get(FINGERPRINT_KEY) != fingerprint:
            return None
        return TensorsData.from_dict(payload)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None  # unreadable or from another version: recalibrate


def save_ranges(path: str | os.PathLike, fingerprint: dict[str, Any], ranges) -> None:
    """Write ``ranges`` (a ``TensorsData``) with its fingerprint atomically."""
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    payload = ranges.to_dict()
    payload["smooth_quant"] = False  # read by quantize_static when it loads the cache
    payload[FINGERPRINT_KEY] = fingerprint
    write_text(path, json.dumps(payload, cls=CalibrationCacheEncoder))
