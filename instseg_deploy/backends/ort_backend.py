"""ONNX Runtime backend: a loader builds the session, a runner runs preprocessed batches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instseg_deploy.backends.base import RawDetections
from instseg_deploy.errors import InstsegError
from instseg_deploy.export.metadata import parse_metadata
from instseg_deploy.processing.preprocess import Batch

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


@dataclass
class SessionSettings:
    providers: tuple[str, ...] = ("cpu",)
    threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    optimization: str = "all"


def read_onnx_metadata(path: str | os.PathLike) -> tuple[dict[str, str], Any]:
    """(metadata_props, ModelProto without weights) with clear errors for missing/broken files."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise InstsegError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise InstsegError(f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not proto.graph.node:
        raise InstsegError(f"{path} is not a readable ONNX model (no graph)")
    return {p.key: p.value for p in proto.metadata_props}, proto


def create_session(path: str | os.PathLike, settings: SessionSettings):
    """An InferenceSession with the requested providers, threads and optimisation level."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = []
    for name in settings.providers:
        if name not in PROVIDERS:
            raise InstsegError(f"unknown provider {name!r} (choose from {', '.join(PROVIDERS)})")
        if PROVIDERS[name] not in available:
            raise InstsegError(f"ONNX Runtime provider {PROVIDERS[name]} is not available here "
                               f"(available: {', '.join(available)}); for cuda/trt install onnxruntime-gpu")
        providers.append(PROVIDERS[name])
    if settings.optimization not in OPT_LEVELS:
        raise InstsegError(f"unknown optimisation level {settings.optimization!r} (choose from {', '.join(OPT_LEVELS)})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[settings.optimization])
    options.log_severity_level = 3
    _register_custom_ops(options)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise InstsegError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0][:200]}") from None


def _register_custom_ops(options) -> None:
    """Make our RoIAlign plugin op runnable on the CPU (the plugin-flavoured export uses it)."""
    try:
        from instseg_deploy.ops.ort_custom_op import register_custom_ops
    except ImportError:
        return
    register_custom_ops(options)


class OrtRunner:
    name = "ort"

    def __init__(self, session, meta: dict[str, Any]):
        self.session = session
        self.meta = meta
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        batch = meta.get("batch", "dynamic")
        self.max_batch = batch if isinstance(batch, int) else None
        size = meta.get("size", "dynamic")
        self.pad_to = tuple(size) if isinstance(size, list) else None

    def run(self, batch: Batch) -> RawDetections:
        n = batch.images.shape[0]
        images, sizes, originals = batch.images, batch.image_sizes, batch.original_sizes
        if self.max_batch is not None and n < self.max_batch:
            # A fixed-batch graph: fill the slots with small blank images and drop their results.
            fill = self.max_batch - n
            mean = np.asarray(self.meta["preprocess"]["pixel_mean"], np.float32)[None, :, None, None]
            images = np.concatenate([images, np.broadcast_to(mean, (fill, *images.shape[1:]))])
            sizes = np.concatenate([sizes, np.full((fill, 2), 32, np.int64)])
            originals = np.concatenate([originals, np.full((fill, 2), 32, np.int64)])
        feeds = {"images": images, "image_sizes": sizes}
        if "original_sizes" in self.input_names:
            feeds["original_sizes"] = originals
        out = dict(zip(self.output_names, self.session.run(None, feeds)))
        keep = out["batch_idx"] < n
        return RawDetections(out["boxes"][keep], out["scores"][keep], out["classes"][keep].astype(np.int64),
                             out["batch_idx"][keep].astype(np.int64), out["mask_probs"][keep],
                             masks=out["masks"][keep] if "masks" in out else None)


def load_ort_runner(path: str | os.PathLike, settings: SessionSettings | None = None,
                    config_fallback: dict[str, Any] | None = None) -> OrtRunner:
    """Read metadata (or use ``config_fallback`` for a model without it) and build the runner."""
    props, _ = read_onnx_metadata(path)
    meta = config_fallback if config_fallback is not None and "instseg" not in props else parse_metadata(props, str(path))
    session = create_session(path, settings or SessionSettings())
    return OrtRunner(session, meta)
