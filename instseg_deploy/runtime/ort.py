"""ONNX Runtime backend: a loader builds the session, a runner runs preprocessed batches."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.metadata import METADATA_KEY, parse_metadata
from instseg_deploy.model_file.reader import read_onnx_metadata
from instseg_deploy.ops.roi_align_contract import uses_plugin
from instseg_deploy.processing.batching import fill_batch
from instseg_deploy.processing.preprocess import Batch
from instseg_deploy.runtime.int8_saturation import warn_if_int8_saturates
from instseg_deploy.runtime.runner import RawDetections, fixed_input_shape
from instseg_deploy.runtime.trt.profiles import input_profiles, resolve_image_range

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}
FORCE_SPINNING_STOP = "session.force_spinning_stop"  # an ONNX Runtime session config key
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


@dataclass
class SessionSettings:
    providers: tuple[str, ...] = ("cpu",)
    threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    optimization: str = "all"
    # per provider short name ("trt", "cuda"): ONNX Runtime provider options; "trt" defaults to
    # tensorrt_ep_options() (engine cache, explicit profile) in load_ort_runner
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def create_session(path: str | os.PathLike, settings: SessionSettings, proto=None):
    """An InferenceSession with the requested providers, threads and optimisation level.

    A plugin-flavoured model (our RoIAlign node) runs on the CPU through the op's CPU twin.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = []
    for name in settings.providers:
        if name not in PROVIDERS:
            raise InstsegError(f"unknown provider {name!r} (choose from {', '.join(PROVIDERS)})")
        if PROVIDERS[name] not in available:
            raise InstsegError(f"ONNX Runtime provider {PROVIDERS[name]} is not available here "
                               f"(available: {', '.join(available)}); for cuda/trt install onnxruntime-gpu")
        providers.append((PROVIDERS[name], settings.provider_options.get(name, {})))
    if settings.optimization not in OPT_LEVELS:
        raise InstsegError(f"unknown optimisation level {settings.optimization!r} "
                           f"(choose from {', '.join(OPT_LEVELS)})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[settings.optimization])
    options.log_severity_level = 3
    # The intra-op threads still spin inside a run, but stop when it returns: spinning on, they hold the
    # cores through our post-processing and whatever runs next (in one process, OpenVINO f32 after an ORT
    # run lost 25 ms per fixture image to them; benchmarks/OPENVINO.md). ORT's own speed is unchanged.
    options.add_session_config_entry(FORCE_SPINNING_STOP, "1")
    model: str | bytes = str(path)
    if proto is not None and uses_plugin(proto):
        model = _plugin_model_for_ort(path, options)
    try:
        return ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise InstsegError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0][:200]}") from None


def _plugin_model_for_ort(path: str | os.PathLike, options) -> bytes:
    import onnx

    from instseg_deploy.ops.ort_custom_op import register_custom_op, to_onnxruntime_model

    try:
        register_custom_op(options)
    except ImportError as e:
        raise InstsegError(str(e)) from None
    return to_onnxruntime_model(onnx.load(str(path))).SerializeToString()


class OrtRunner:
    name = "ort"

    def __init__(self, session, meta: dict[str, Any]):
        self.session = session
        self.meta = meta
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.max_batch, self.pad_to = fixed_input_shape(meta)

    def run(self, batch: Batch) -> RawDetections:
        # A fixed-batch graph: the missing slots get blank images whose results are dropped.
        feeds, n = fill_batch(batch, self.meta["preprocess"]["pixel_mean"], self.input_names,
                              batch_size=self.max_batch or 0)
        return RawDetections.from_graph_outputs(dict(zip(self.output_names, self.session.run(None, feeds))), n)


def load_ort_runner(path: str | os.PathLike, settings: SessionSettings | None = None,
                    config_fallback: dict[str, Any] | None = None) -> OrtRunner:
    """Read metadata (or use ``config_fallback`` for a model without it) and build the runner."""
    props, proto = read_onnx_metadata(path)
    if config_fallback is not None and METADATA_KEY not in props:
        meta = config_fallback
    else:
        meta = parse_metadata(props, str(path))
    settings = settings or SessionSettings()
    if "trt" in settings.providers and "trt" not in settings.provider_options:
        settings = replace(settings, provider_options={**settings.provider_options, "trt": tensorrt_ep_options(
            meta, [i.name for i in proto.graph.input])})
    if settings.providers[0] == "cpu":
        warn_if_int8_saturates(meta, str(path), "ONNX Runtime")
    session = create_session(path, settings, proto)
    return OrtRunner(session, meta)


def tensorrt_ep_options(meta: dict[str, Any], input_names: list[str], fp16: bool = False) -> dict[str, Any]:
    """TensorRT execution provider options for our graphs.

    Engines are cached on disk (a Mask R-CNN build takes minutes), and one explicit profile covers
    every input the preprocessing can produce (the instseg export --to trt defaults); without it
    the EP rebuilds its engine whenever an image size falls outside the shapes seen so far.
    """
    from instseg_deploy.ops.native_build import cache_root

    profiles = input_profiles(resolve_image_range(meta), input_names)
    cache = str(cache_root() / "ort-tensorrt")

    def shapes(which: str) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in getattr(r, which))}" for name, r in profiles.items())

    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache, "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache, "trt_fp16_enable": fp16, "trt_profile_min_shapes": shapes("min"),
            "trt_profile_opt_shapes": shapes("opt"), "trt_profile_max_shapes": shapes("max")}
