"""Make a :class:`Predictor` for a backend by name; backend modules are imported only when used."""

from __future__ import annotations

import os
from collections.abc import Sequence

from instseg_deploy.errors import InstsegError
from instseg_deploy.processing.masks import check_mask_format
from instseg_deploy.processing.preprocess import PreprocessParams
from instseg_deploy.runtime.predictor import DEFAULT_SCORE_THRESH, Predictor, check_channel_order, checked_score_thresh

BACKENDS = ("torch", "ort", "openvino", "trt", "triton")


def load_predictor(backend: str = "torch", config: str | os.PathLike | None = None,
                   weights: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                   score_thresh: float | None = DEFAULT_SCORE_THRESH, device: str = "cpu",
                   providers: tuple[str, ...] = ("cpu",), threads: int = 0, optimization: str = "all",
                   precision: str = "auto", hint: str = "latency", mask_format: str = "dense",
                   overrides: Sequence[str] = (), channel_order: str = "BGR", url: str | None = None,
                   protocol: str = "http", model_name: str = "instseg") -> Predictor:
    """A ready predictor. ``score_thresh``: keep detections scoring at least this; the default,
    DEFAULT_SCORE_THRESH, is also ``instseg predict``'s. None: the model's own threshold
    (MODEL.ROI_HEADS.SCORE_THRESH_TEST, or the one baked into an exported file), which AP needs: eval,
    bench and quantize pass None. Below an exported file's baked threshold is an error, except for the
    default, which then gives the file's own.
    ``mask_format``: how results hold masks, dense | rle | cropped | none (see :class:`Predictor`).
    ``overrides``: detectron2's ``KEY VALUE ...`` config overrides (torch, and ``config`` fallbacks).
    ``channel_order``: "BGR" (cv2, the default) or "RGB" (PIL, imageio) arrays.

    torch: ``config`` + ``weights`` (``config`` optional for our own checkpoints; ``weights`` defaults
    to the config's MODEL.WEIGHTS).
    ort: ``model`` (an exported .onnx); ``config`` only for a model without instseg metadata.
    openvino: ``model`` (an exported .onnx or an OpenVINO IR .xml); ``precision`` f32 | bf16 | auto,
    ``hint`` latency | throughput.
    ``threads``: intra-op threads of every backend; 0: for torch the cores other work leaves idle
    (runtime.threads), for ONNX Runtime and OpenVINO their own default.
    trt: ``model`` (an .engine with its sidecar).
    triton: ``url`` HOST:PORT of a running Triton server (``instseg serve``, or a repository from
    ``instseg export --to triton``), ``protocol`` http | grpc, ``model_name``; the server runs the model.
    On a CUDA device (torch, trt) masks are pasted, and for torch images resized, on the GPU.
    """
    check_mask_format(mask_format), check_channel_order(channel_order)  # before anything loads
    if overrides and backend != "torch" and config is None:
        raise InstsegError("config overrides change a model built from its config (--backend torch, or --config "
                           "for an exported file without metadata); an exported model has its config baked in: "
                           "re-export it with the overrides")
    if backend == "triton":
        if url is None:
            raise InstsegError("--url HOST:PORT of a Triton server is required for --backend triton")
        if config is not None or weights is not None or model is not None:
            raise InstsegError("--backend triton uses the model the server serves: drop --config/--weights/--model")
        from instseg_deploy.runtime.triton.client import ServerAddress, load_triton_predictor

        predictor = load_triton_predictor(ServerAddress(url, protocol, model_name), score_thresh)
    else:
        predictor = _load(backend, config, weights, model, score_thresh, device, providers, threads, optimization,
                          precision, hint, overrides)
    predictor.mask_format, predictor.channel_order = mask_format, channel_order
    return predictor


def _load(backend, config, weights, model, score_thresh, device, providers, threads, optimization, precision, hint,
          overrides) -> Predictor:
    if backend == "torch":
        if weights is None and config is None:
            raise InstsegError("--weights is required for --backend torch (or --config with MODEL.WEIGHTS)")
        from instseg_deploy.runtime.threads import set_torch_threads
        from instseg_deploy.runtime.torch_model import load_model
        from instseg_deploy.runtime.torch_runner import TorchRunner

        net, cfg = load_model(config, weights, score_thresh=score_thresh, overrides=overrides)
        set_torch_threads(threads)
        runner = TorchRunner(net, device)
        return Predictor(runner, PreprocessParams.from_model_config(cfg.model), cfg.class_names,
                         score_thresh=score_thresh or 0.0,
                         processing_device=runner.device if runner.device.type == "cuda" else None)
    if backend == "ort":
        if model is None:
            raise InstsegError("--model (an exported .onnx file) is required for --backend ort")
        from instseg_deploy.runtime.ort import SessionSettings, load_ort_runner

        fallback = _metadata_from_config(config, overrides) if config is not None else None
        runner = load_ort_runner(model, SessionSettings(tuple(providers), threads, optimization), fallback)
        return exported_model_predictor(runner, model, score_thresh)
    if backend == "openvino":
        if model is None:
            raise InstsegError("--model (an exported .onnx, or an OpenVINO IR .xml) is required for --backend openvino")
        from instseg_deploy.runtime.openvino import OpenVinoSettings, load_openvino_runner

        fallback = _metadata_from_config(config, overrides) if config is not None else None
        runner = load_openvino_runner(model, OpenVinoSettings(precision, threads, hint), fallback)
        return exported_model_predictor(runner, model, score_thresh)
    if backend == "trt":
        if model is None:
            raise InstsegError("--model (a TensorRT .engine from `instseg export --to trt`) is required for "
                               "--backend trt")
        from instseg_deploy.runtime.trt.runner import load_trt_runner

        runner = load_trt_runner(model, device=device)
        predictor = exported_model_predictor(runner, model, score_thresh)
        predictor.processing_device = runner.device  # masks pasted on the engine's GPU
        return predictor
    raise InstsegError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")


def exported_model_predictor(runner, model, score_thresh: float | None) -> Predictor:
    """A predictor for an exported model: classes, preprocessing and thresholds from its metadata."""
    from instseg_deploy.model_file.metadata import preprocess_params

    meta = runner.meta
    score_thresh = checked_score_thresh(meta, score_thresh, model)
    return Predictor(runner, preprocess_params(meta), tuple(meta["class_names"]), score_thresh=score_thresh or 0.0)


def _metadata_from_config(config: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """Metadata equivalent for an ONNX file exported elsewhere, taken from its detectron2 config."""
    from instseg_deploy.class_names import resolve_class_names
    from instseg_deploy.config import load_config
    from instseg_deploy.model_file.metadata import build_metadata

    cfg = load_config(config, overrides)
    cfg.class_names = resolve_class_names(cfg.model.num_classes)  # no names travel with a config alone
    return build_metadata(cfg, "raw", "dynamic", "dynamic", "onnx", [], [])
