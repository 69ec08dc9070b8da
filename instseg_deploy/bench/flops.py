"""FLOPs of one inference at a given input, counted on the torch model (any backend runs the same graph)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.preprocess import Batch


@dataclass(frozen=True)
class ImageGflops:
    """GFLOPs of one image, split by what the detections change: the mask head runs once per detection.

    The count runs on the torch model of the architecture, whose weights (random unless --weights)
    decide how many detections it makes; :meth:`at` gives the count for the detections a backend
    really returned (its row's detections per image), so a row's GFLOP/s does not depend on them.
    """

    fixed: float  # backbone, FPN, RPN head and box head (on the proposals, POST_NMS_TOPK_TEST at real sizes)
    per_detection: float  # the mask head on one detection

    def at(self, detections_per_image: float) -> float:
        return self.fixed + self.per_detection * detections_per_image


def _gflops(run) -> tuple[float, object]:
    """(GFLOPs of ``run()``, what it returned)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        result = run()
    return counter.get_total_flops() / 1e9, result


def mask_head_gflops(model: MaskRCNN) -> float:
    """GFLOPs of the mask head on one RoI."""
    head = model.roi_heads.mask_head
    first = next(m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    side = model.cfg.mask_head.pooler.resolution
    return _gflops(lambda: head(torch.zeros(1, first.in_channels, side, side)))[0]


def count_gflops(model: MaskRCNN, batch: Batch) -> ImageGflops:
    """GFLOPs (multiply-add = 2 FLOPs) of convs, matmuls and linears for ``batch``, per image.

    Data-dependent parts (NMS, RoIAlign sampling, mask paste) are not counted; they are a small
    share of the total at detection sizes, and the ROI-head cost follows the real proposals.
    """
    total, (detections, _) = _gflops(lambda: model.inference(torch.from_numpy(batch.images),
                                                             torch.from_numpy(batch.image_sizes)))
    images = max(len(batch.images), 1)
    per_detection = mask_head_gflops(model)
    return ImageGflops((total - per_detection * len(detections.scores)) / images, per_detection)


def measure_peak_gflops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Best float32 GEMM throughput (GFLOP/s) on this machine with ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.from_numpy(np.random.default_rng(0).random((size, size), dtype=np.float32))
        b = a.t().contiguous()
        torch.mm(a, b)  # warm-up
        import time

        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        return 2 * size**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)


def measure_gpu_peak_gflops(device: str, size: int = 8192, repeats: int = 10) -> tuple[float, str]:
    """Best float32 GEMM throughput (GFLOP/s) on CUDA ``device``, with TF32 tensor cores exactly when
    cuDNN may use them for the model's convolutions (torch's default): the limit those convs run
    against. Returns (GFLOP/s, what was measured)."""
    dev = torch.device(device)
    tf32 = torch.backends.cudnn.allow_tf32
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        gen = torch.Generator(device=dev).manual_seed(0)
        a = torch.rand((size, size), device=dev, generator=gen)
        b = torch.rand((size, size), device=dev, generator=gen)
        torch.mm(a, b)  # warm-up (cuBLAS handle, clocks)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = float("inf")
        for _ in range(repeats):
            start.record()
            torch.mm(a, b)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000)
        name = torch.cuda.get_device_name(dev)
        return 2 * size**3 / best / 1e9, f"float32 GEMM on {name}{' with TF32 tensor cores' if tf32 else ''}"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


# Compute types a row's "% of peak" is set against; OpenVINO measures bf16 and int8 (its CPU plugin is what
# runs them on AMX / AVX512-BF16 / VNNI / AVX2), torch's sgemm measures f32 (``measure_peak_gflops``).
OPENVINO_COMPUTE = ("f32", "bf16", "int8")


@dataclass(frozen=True)
class GemmPeak:
    """One measured peak: GFLOP/s (None: not measured), what was measured or why not, and for OpenVINO
    the kernel its runtime model reports for the faster of its GEMM and convolution (see :func:`compute_kernel`)."""

    gflops: float | None
    source: str
    kernel: dict[str, str] | None = None


def measure_openvino_peak(compute: str, threads: int, size: int = 2048, conv: tuple[int, int] = (512, 64),
                          repeats: int = 10) -> GemmPeak:
    """Best throughput (GFLOP/s, multiply-add = 2 ops; GOP/s for int8) of OpenVINO's CPU plugin on the faster of
    one ``size``-cubed MatMul with constant weights and one 3x3 convolution of ``conv`` = (channels, side):
    channels -> channels on a side x side map; for ``compute`` f32, bf16 (INFERENCE_PRECISION_HINT bf16) or
    int8 (FakeQuantize on both inputs: u8 activations, i8 weights), with ``threads`` threads.

    Both, because which reaches the CPU's limit depends on the ISA: on a 2-core AVX2 EPYC the int8
    FullyConnected ran oneDNN's jit_gemm_I8 at 174 GOP/s while int8 convolutions (jit_avx2_I8) reached
    354-364, and an INT8 model's convolutions 245 (a GEMM-only peak put them at 141%). The result names
    the kernel of the faster one; where openvino is not importable its ``gflops`` is None and ``source``
    says why. A CPU without the requested precision's kernels runs something else (OpenVINO falls back
    to f32 for bf16 without BF16); ``source`` says what. 2048 by default: at 1024 the GEMM kernels reach
    only 70-85% of what they reach at 2048 and 3072 (measured on a 2-core AVX512-BF16 EPYC)."""
    if compute not in OPENVINO_COMPUTE:
        raise ValueError(f"compute must be one of {OPENVINO_COMPUTE}, got {compute!r}")
    try:
        import openvino as ov
    except ImportError as e:
        return GemmPeak(None, f"no {compute} peak: openvino is not importable ({e}); `pip install openvino` "
                              "measures it")
    from instseg_deploy.runtime.openvino import openvino_version

    version = openvino_version(ov)
    int8 = compute == "int8"
    channels, side = conv
    candidates = ((f"{compute} GEMM {size}x{size}x{size}", _openvino_gemm(size, int8), (size, size), 2 * size**3),
                  (f"{compute} 3x3 convolution {channels}->{channels} on {side}x{side}",
                   _openvino_conv(channels, side, int8), (1, channels, side, side), 2 * 9 * channels**2 * side**2))
    measured = []
    for name, model, shape, ops in candidates:
        try:
            seconds, kernel = _best_openvino_seconds(model, shape, compute, threads, repeats)
        except RuntimeError as e:  # e.g. no CPU plugin for this machine
            return GemmPeak(None, f"no {compute} peak: OpenVINO {version} could not run the {name} here ({e})")
        ran = (f"{kernel.get('layerType')} {kernel.get('primitiveType')}, runtime precision "
               f"{kernel.get('runtimePrecision')}" if kernel else "kernel not reported")
        measured.append((ops / seconds / 1e9, name, ran, kernel))
    measured.sort(key=lambda m: m[0], reverse=True)
    (gflops, name, ran, kernel), (other_gflops, other_name, other_ran, _) = measured
    threads_text = f"{threads} thread" + "s" * (threads != 1)
    source = (f"{name} through OpenVINO {version}, {threads_text}: {ran} (the faster of it and the {other_name}: "
              f"{other_gflops:.0f}, {other_ran})")
    return GemmPeak(gflops, source, kernel)


def _best_openvino_seconds(model, shape: tuple[int, ...], compute: str, threads: int,
                           repeats: int) -> tuple[float, dict[str, str] | None]:
    """The best of ``repeats`` timed runs of ``model`` compiled for ``compute``, and its kernel."""
    import time

    from instseg_deploy.runtime.openvino import shared_core

    compiled = shared_core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if compute == "bf16" else "f32", "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    request.infer({0: x})  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - start)
    return best, compute_kernel(compiled)


def _fake_quantized(a, b):
    """FakeQuantize on activations ``a`` ([0, 1] over 256 levels: u8) and weights ``b`` ([-1, 1] over 255
    levels: symmetric i8), the pattern OpenVINO's low-precision transformations turn into an int8 kernel."""
    from openvino import opset13 as ops

    def fq(x, low: float, high: float, levels: int):
        lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
        return ops.fake_quantize(x, lo, hi, lo, hi, levels)

    return fq(a, 0.0, 1.0, 256), fq(b, -1.0, 1.0, 255)


def _openvino_gemm(size: int, int8: bool):
    """An ov.Model: input [size, size] @ constant weights [size, size]^T, fake-quantized with ``int8``."""
    import openvino as ov
    from openvino import opset13 as ops

    weights = np.random.default_rng(0).uniform(-1, 1, (size, size)).astype(np.float32)
    a, b = ops.parameter([size, size], np.float32, name="a"), ops.constant(weights)
    a_in, b_in = _fake_quantized(a, b) if int8 else (a, b)
    return ov.Model([ops.matmul(a_in, b_in, False, True)], [a], "gemm_peak")


def _openvino_conv(channels: int, side: int, int8: bool):
    """An ov.Model: a 3x3 convolution, padding 1, of input [1, channels, side, side] with constant weights
    [channels, channels, 3, 3], fake-quantized with ``int8``."""
    import openvino as ov
    from openvino import opset13 as ops

    weights = np.random.default_rng(0).uniform(-1, 1, (channels, channels, 3, 3)).astype(np.float32)
    a, b = ops.parameter([1, channels, side, side], np.float32, name="a"), ops.constant(weights)
    a_in, b_in = _fake_quantized(a, b) if int8 else (a, b)
    return ov.Model([ops.convolution(a_in, b_in, [1, 1], [1, 1], [1, 1], [1, 1])], [a], "conv_peak")


def compute_kernel(compiled) -> dict[str, str] | None:
    """What a compiled OpenVINO model runs for its MatMul or convolution, from the runtime model's rt_info:
    layerType (FullyConnected / MatMul / Convolution), primitiveType (e.g. brgemm_avx512_I8, jit_avx2_I8,
    gemm_mlas_f32) and runtimePrecision (u8/i8 for int8 kernels, bf16, f32); None where none is reported."""
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        keys = set(info.keys())
        if "layerType" in keys and info["layerType"].astype(str) in ("FullyConnected", "MatMul", "Convolution"):
            return {k: info[k].astype(str) for k in ("layerType", "primitiveType", "runtimePrecision") if k in keys}
    return None
