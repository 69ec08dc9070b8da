"""Make a :class:`Predictor` for a backend by name; backend modules are imported only when used."""

from __future__ import annotations

import os

from instseg_deploy.errors import InstsegError
from instseg_deploy.predictor import Predictor
from instseg_deploy.processing.preprocess import PreprocessParams

BACKENDS = ("torch",)


def load_predictor(backend: str = "torch", config: str | os.PathLike | None = None,
                   weights: str | os.PathLike | None = None, score_thresh: float = 0.0,
                   device: str = "cpu", class_names: tuple[str, ...] | None = None) -> Predictor:
    """A ready predictor. torch: ``config`` + ``weights`` (``config`` optional for our checkpoints)."""
    if backend == "torch":
        if weights is None:
            raise InstsegError("--weights is required for --backend torch")
        from instseg_deploy.backends.torch_backend import TorchRunner
        from instseg_deploy.model_files import load_model

        model, cfg = load_model(config, weights, score_thresh=score_thresh)
        names = class_names or cfg.class_names
        return Predictor(TorchRunner(model, device), PreprocessParams.from_model_config(cfg.model), names,
                         score_thresh=score_thresh)
    raise InstsegError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
