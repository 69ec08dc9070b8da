"""One benchmark row: a backend, a model, a batch size and a thread count, measured in a fresh process.

A fresh process per row keeps rows independent (thread pools, allocator state, peak memory).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from instseg_deploy.bench.stats import latency_stats


@dataclass(frozen=True)
class RowSpec:
    backend: str  # torch | ort | trt
    label: str  # what the table shows, e.g. "ort fp32"
    batch: int
    threads: int
    images: tuple[str, ...]
    warmup: int
    iters: int
    min_size: int | None  # override of the model's test resize (None: the model's own)
    max_size: int | None
    config: str | None = None
    weights: str | None = None
    model: str | None = None
    device: str = "cpu"


def _load(spec: RowSpec):
    from instseg_deploy.loading import load_predictor

    return load_predictor(spec.backend, spec.config, spec.weights, spec.model, device=spec.device,
                          threads=spec.threads)


def _measure(spec: RowSpec) -> dict:
    import torch

    from instseg_deploy.image_io import read_image
    from instseg_deploy.processing.preprocess import preprocess

    torch.set_num_threads(spec.threads)
    start = time.perf_counter()
    predictor = _load(spec)
    startup = time.perf_counter() - start
    if spec.min_size:
        predictor.params = dataclasses.replace(predictor.params, min_size=spec.min_size, max_size=spec.max_size)
    images = [read_image(p)[0] for p in spec.images]
    batches = [images[i:i + spec.batch] for i in range(0, len(images) - spec.batch + 1, spec.batch)] or [images]
    cuda = spec.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    end_to_end, model_only, detections, input_hws = [], [], 0, set()
    for i in range(spec.warmup + spec.iters):
        chunk = batches[i % len(batches)]
        prepared = preprocess(chunk, predictor.params, predictor.channel_order, pad_to=predictor.runner.pad_to)
        sync()
        t0 = time.perf_counter()
        predictor.runner.run(prepared)
        sync()
        t1 = time.perf_counter()
        results = predictor.predict(chunk)
        sync()
        t2 = time.perf_counter()
        if i >= spec.warmup:
            model_only.append(t1 - t0)
            end_to_end.append(t2 - t1)
            detections += sum(len(r) for r in results)
            input_hws.add(tuple(prepared.images.shape[2:]))
    part = {
        "backend": spec.backend, "label": spec.label, "batch": spec.batch, "threads": spec.threads,
        "startup_s": startup, "end_to_end_s": end_to_end, "model_s": model_only, "detections": detections,
        "input_hws": sorted(input_hws), "peak_rss_mb": peak_rss_mb(),
    }
    if cuda:
        part["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return part


def merge_rounds(parts: list[dict]) -> dict:
    """One table row from the rounds of one spec (each a fresh process): latency statistics over all
    their samples, the median startup, the largest peak memory, and each round's end-to-end p50."""
    first = parts[0]
    end_to_end = [t for p in parts for t in p["end_to_end_s"]]
    model_only = [t for p in parts for t in p["model_s"]]
    batch = first["batch"]
    row = {k: first[k] for k in ("backend", "label", "batch", "threads")}
    # Padded network inputs seen (images of other aspect ratios pad differently); the largest by area.
    input_hws = sorted({tuple(hw) for p in parts for hw in p["input_hws"]})
    row.update({
        "input_hw": list(max(input_hws, key=lambda hw: hw[0] * hw[1])), "input_hws": [list(hw) for hw in input_hws],
        "rounds": len(parts), "startup_s": statistics.median(p["startup_s"] for p in parts),
        "end_to_end_ms": latency_stats(end_to_end), "model_ms": latency_stats(model_only),
        "images_per_s": batch / statistics.fmean(end_to_end),
        "model_images_per_s": batch / statistics.fmean(model_only),
        "detections_per_image": sum(p["detections"] for p in parts) / (len(end_to_end) * batch),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
        "round_p50_ms": [latency_stats(p["end_to_end_s"])["p50"] for p in parts],
    })
    if "gpu_peak_mb" in first:
        row["gpu_peak_mb"] = max(p["gpu_peak_mb"] for p in parts)
    return row


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: ru_maxrss survives exec, so a
    spawned child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(spec: RowSpec, queue) -> None:
    try:
        queue.put(("ok", _measure(spec)))
    except BaseException as e:  # report any failure to the parent instead of dying silently
        queue.put(("error", f"{type(e).__name__}: {e}"))


def run_row(spec: RowSpec, timeout_s: float = 3600) -> dict:
    """Measure one round of a row in a spawned process (raw samples; see :func:`merge_rounds`);
    raises RuntimeError with the child's error."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    env_threads = str(spec.threads)
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({"OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads})
    try:
        proc = ctx.Process(target=_child, args=(spec, queue))
        proc.start()
        status, payload = queue.get(timeout=timeout_s)
        proc.join()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if status != "ok":
        raise RuntimeError(f"{spec.label} (batch {spec.batch}, {spec.threads} threads): {payload}")
    return payload


def image_paths(folder: Path) -> tuple[str, ...]:
    from instseg_deploy.image_io import list_images

    return tuple(str(p) for p in list_images([folder]))
