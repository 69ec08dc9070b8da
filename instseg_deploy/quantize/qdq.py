"""Post-training INT8 quantization of an exported detector into a QDQ ONNX model.

Tool: ONNX Runtime's ``onnxruntime.quantization`` (``quantize_static``, QDQ format), chosen by
measurement over NVIDIA modelopt's ONNX PTQ (0.47, calibrating on the CPU): on the fixture
model modelopt took ~4.5x longer, dropped the metadata, needs a CUDA stack (onnxruntime-gpu,
cupy) that displaces the CPU onnxruntime, and puts Q/DQ on inputs only -- a placement ONNX
Runtime's CPU provider cannot fuse into integer kernels (0 of 80 convs), so no CPU speed-up. For
OpenVINO, NNCF's post-training quantization of the same export (same calibration images and float
parts) ran 3-7% faster but moved the fixture val set's bbox AP by +0.59 or more, and writes an IR
that ONNX Runtime and TensorRT cannot run (benchmarks/openvino_nncf.py).

TensorRT-compatible placement by default: symmetric INT8 activations (zero point 0),
per-channel symmetric INT8 weights, Q/DQ on the inputs (and, but for ConvTranspose, the outputs)
of Conv/ConvTranspose/Gemm/MatMul inside the network stages. Post-processing (anchor decoding,
top-k, NMS, RoIAlign, mask pasting) and the sensitive prediction layers (``stages.SENSITIVE_LAYERS``)
stay float.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instseg_deploy.data.calibration import CalibrationError
from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.metadata import FLOAT_PRE_POOL_KEY, WEIGHT_BITS_KEY
from instseg_deploy.quantize.cache import file_digest, load_ranges, save_ranges
from instseg_deploy.quantize.calibration import images_digest, reader_for_model
from instseg_deploy.quantize.model_io import read_source_model, write_converted
from instseg_deploy.quantize.stages import (
    FLOAT_OUTPUT_OP_TYPES,
    QUANTIZED_OP_TYPES,
    compile_patterns,
    float_nodes,
)

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
ACTIVATIONS = {
    "int8": "symmetric int8, zero point 0 (TensorRT explicit quantization; ONNX Runtime)",
    "uint8": "asymmetric uint8 (ONNX Runtime's fastest x86 CPU layout; TensorRT cannot load it)",
}


WEIGHT_BITS = (8, 7)


class NothingToQuantize(InstsegError):
    """Every candidate node is excluded."""


@dataclass(frozen=True)
class QuantizeSettings:
    method: str = "minmax"  # activation range estimate: minmax | entropy | percentile
    per_channel: bool = True  # one weight scale per output channel
    exclude: tuple[str, ...] = ()  # extra regular expressions on node names to keep float
    keep_sensitive: bool = True  # keep stages.SENSITIVE_LAYERS float
    activations: str = "int8"
    percentile: float = 99.999  # for method "percentile"
    # 7: weights in [-64, 64], so that x86 CPUs without VNNI, whose int8 dot product sums pairs of
    # products in int16 (vpmaddubsw), cannot saturate it (benchmarks/OPENVINO.md, "AVX2")
    weight_bits: int = 8

    def check(self) -> None:
        if self.method not in METHODS:
            raise InstsegError(f"--method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.activations not in ACTIVATIONS:
            raise InstsegError(f"--activations {self.activations!r} is not one of {', '.join(ACTIVATIONS)}")
        compile_patterns(self.exclude)  # a bad --exclude fails before any work
        if not 50.0 < self.percentile <= 100.0:
            raise InstsegError(f"--percentile must be in (50, 100], got {self.percentile}")
        if self.weight_bits not in WEIGHT_BITS:
            raise InstsegError(f"--weight-bits must be {' or '.join(map(str, WEIGHT_BITS))}, got {self.weight_bits}")


@dataclass
class CalibrationResult:
    ranges: Any  # onnxruntime TensorsData
    images_used: int
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    cache_reused: bool = False


@dataclass
class QuantizeReport:
    path: Path
    quantized: list[str]  # node names with Q/DQ inputs
    kept_float: list[str]  # Conv/ConvTranspose/Gemm/MatMul nodes left in float
    calibration: CalibrationResult
    cache_path: Path | None
    seconds: float


MIN_ONNXRUNTIME = (1, 27)  # quantize_static(calibration_cache_path=...): ranges computed once, reused


def _check_onnxruntime() -> None:
    import onnxruntime

    version = tuple(int(p) for p in onnxruntime.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_ONNXRUNTIME:
        raise InstsegError(f"INT8 quantization needs onnxruntime >= {'.'.join(map(str, MIN_ONNXRUNTIME))} "
                           f"(installed {onnxruntime.__version__}): pip install -U onnxruntime")


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, METHODS[method])


def calibration_fingerprint(model_path: str | os.PathLike, images: list[Path], settings: QuantizeSettings) -> dict:
    """What the ranges depend on: the model file, the image set, the method and its options."""
    import onnxruntime

    return {"model": file_digest(model_path), "images": images_digest(images), "num_images": len(images),
            "method": settings.method, "symmetric": settings.activations == "int8",
            "percentile": settings.percentile if settings.method == "percentile" else None,
            "op_types": list(QUANTIZED_OP_TYPES), "onnxruntime": onnxruntime.__version__}


@contextlib.contextmanager
def _quiet_ort_quantization():
    """onnxruntime.quantization logs advice through the root logger; keep the CLI output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def calibrate(model_path: str | os.PathLike, meta: dict, input_names: list[str], images: list[Path],
              settings: QuantizeSettings, cache_path: str | os.PathLike | None = None,
              on_image: Callable[[int, int], None] | None = None,
              on_skip: Callable[[Path, str], None] | None = None) -> CalibrationResult:
    """Activation ranges of every Conv/ConvTranspose/Gemm/MatMul input and output over ``images``.

    Reuses ``cache_path`` when it holds ranges for the same model, images and method; writes it
    otherwise. One image per run, so memory stays bounded at any input size.
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    if not images:
        raise CalibrationError("the calibration set is empty")
    fingerprint = calibration_fingerprint(model_path, images, settings)
    if cache_path is not None:
        cached = load_ranges(cache_path, fingerprint)
        if cached is not None:
            if on_image is not None:
                on_image(len(images), len(images))
            return CalibrationResult(cached, len(images), cache_reused=True)
    reader = reader_for_model(meta, input_names, images, on_image=on_image, on_skip=on_skip)
    symmetric = settings.activations == "int8"
    options: dict[str, Any] = {"symmetric": symmetric}
    if settings.method == "percentile":
        options["percentile"] = settings.percentile
    with tempfile.TemporaryDirectory(prefix="instseg-calib-") as tmp, _quiet_ort_quantization():
        calibrator = create_calibrator(Path(model_path), list(QUANTIZED_OP_TYPES),
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_ort_method(settings.method), extra_options=options)
        while (feeds := reader.get_next()) is not None:
            calibrator.collect_data(_OneFeed(feeds))  # ranges/histograms merge across calls
        ranges = calibrator.compute_data()
        del calibrator
    if cache_path is not None:
        save_ranges(cache_path, fingerprint, ranges)
    return CalibrationResult(ranges, reader.used, list(reader.skipped))


class _OneFeed:
    """A CalibrationDataReader holding a single input dict."""

    def __init__(self, feeds: dict):
        self._feeds: dict | None = feeds

    def get_next(self) -> dict | None:
        feeds, self._feeds = self._feeds, None
        return feeds


def quantize_int8(model: str | os.PathLike, out: str | os.PathLike, images: list[Path],
                  settings: QuantizeSettings = QuantizeSettings(), cache_path: str | os.PathLike | None = None,
                  on_image: Callable[[int, int], None] | None = None,
                  on_skip: Callable[[Path, str], None] | None = None,
                  only_nodes: list[str] | None = None) -> QuantizeReport:
    """Calibrate on ``images`` and write a QDQ INT8 model with the source's metadata.

    ``only_nodes``: quantize just these nodes (the sensitivity analysis quantizes one stage at
    a time); the float list still applies.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from instseg_deploy.quantize.qdq_layout import dedicate_qdq_pairs, float_pre_pool_activations

    settings.check()
    _check_onnxruntime()
    start = time.perf_counter()
    proto, props, meta = read_source_model(model, "quantize it")
    nodes = proto.graph.node
    kept_float = float_nodes(nodes, QUANTIZED_OP_TYPES, settings.exclude, settings.keep_sensitive)
    candidates = [n.name for n in nodes if n.op_type in QUANTIZED_OP_TYPES and n.name not in kept_float]
    if only_nodes is not None:
        wanted = set(only_nodes)
        candidates = [name for name in candidates if name in wanted]
    if not candidates:
        raise NothingToQuantize(f"nothing left to quantize: every {'/'.join(QUANTIZED_OP_TYPES)} is excluded "
                                "(see --exclude)")
    input_names = [i.name for i in proto.graph.input]
    del proto  # the quantizer reloads the file with shape inference
    calib = calibrate(model, meta, input_names, images, settings, cache_path, on_image, on_skip)
    int8 = settings.activations == "int8"
    with tempfile.TemporaryDirectory(prefix="instseg-quant-") as tmp, _quiet_ort_quantization():
        ranges_file = Path(tmp) / "ranges.json"
        save_ranges(ranges_file, {}, calib.ranges)
        quantized_path = Path(tmp) / "quantized.onnx"
        quantize_static(str(model), str(quantized_path), calibration_data_reader=None,
                        calibration_cache_path=str(ranges_file), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8 if int8 else QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=settings.per_channel, reduce_range=settings.weight_bits == 7,
                        op_types_to_quantize=list(QUANTIZED_OP_TYPES), nodes_to_quantize=candidates,
                        calibrate_method=_ort_method(settings.method),
                        extra_options={"ActivationSymmetric": int8, "WeightSymmetric": True,
                                       "MatMulConstBOnly": True,
                                       "OpTypesToExcludeOutputQuantization": list(FLOAT_OUTPUT_OP_TYPES)})
        quantized = onnx.load(str(quantized_path))
    if int8:
        dedicate_qdq_pairs(quantized)  # so that ONNX Runtime's x86 kernels fuse it (see qdq_layout)
    float_activations = float_pre_pool_activations(quantized)  # so that OpenVINO computes it right
    details = {"tool": f"onnxruntime.quantization {onnxruntime.__version__}", "format": "QDQ",
               "activations": settings.activations,
               "weights": "int8 symmetric " + ("per-channel" if settings.per_channel else "per-tensor"),
               WEIGHT_BITS_KEY: settings.weight_bits, "method": settings.method,
               "calibration_images": calib.images_used, "kept_float": kept_float,
               FLOAT_PRE_POOL_KEY: float_activations}
    path = write_converted(quantized, out, props, meta, "int8", details)
    return QuantizeReport(path, candidates, kept_float, calib, Path(cache_path) if cache_path else None,
                          time.perf_counter() - start)
