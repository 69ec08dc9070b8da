"""FLOPs of one inference at a given input, counted on the torch model (any backend runs the same graph)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from instseg_deploy.modeling import MaskRCNN
from instseg_deploy.processing.preprocess import Batch


def count_gflops(model: MaskRCNN, batch: Batch) -> float:
    """GFLOPs (multiply-add = 2 FLOPs) of convs, matmuls and linears for ``batch``.

    Data-dependent parts (NMS, RoIAlign sampling, mask paste) are not counted; they are a small
    share of the total at detection sizes, and the ROI-head cost follows the real proposals.
    """
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.inference(torch.from_numpy(batch.images), torch.from_numpy(batch.image_sizes))
    return counter.get_total_flops() / 1e9 / max(len(batch.images), 1)


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
