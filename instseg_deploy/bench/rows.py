"""Benchmark rows: a backend, a model, a batch size and a thread count, each in a process of its own.

A process per row keeps rows independent (thread pools, allocator state, peak memory). A row's process
loads its model and warms up once, then the parent asks every row in turn for a few timed iterations per
round, so each row's samples are spread over the whole run and a slow minute of a shared machine moves
all rows alike instead of the one row that was running. A process's speed is also a draw of its own
(torch with 2 threads: +-8% from one process to the next, steady for the process's life), so the rounds
can be split among several successive processes per row, whose draws then average out.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from instseg_deploy.bench.stats import latency_stats
from instseg_deploy.errors import InstsegError
from instseg_deploy.lifetime import die_with_parent


class RowError(InstsegError):
    """A benchmark row's process failed: its model did not load, a run raised, or it stopped answering."""


@dataclass(frozen=True)
class RowSpec:
    backend: str  # torch | ort | openvino | trt
    label: str  # what the table shows, e.g. "ort fp32"
    batch: int
    threads: int
    images: tuple[str, ...]
    warmup: int
    iters: int  # timed iterations per round
    min_size: int | None  # override of the model's test resize (None: the model's own)
    max_size: int | None
    config: str | None = None
    weights: str | None = None
    model: str | None = None
    device: str = "cpu"
    precision: str = "auto"  # openvino: the inference precision (f32, bf16)
    mask_format: str = "rle"  # how the predictor makes masks (structures.MASK_FORMATS)


class _RowSession:
    """Child side: the loaded predictor and its batches; measures iterations on request."""

    def __init__(self, spec: RowSpec, first: int):
        import torch

        from instseg_deploy.image_io import read_image
        from instseg_deploy.runtime.factory import load_predictor

        torch.set_num_threads(spec.threads)
        self.spec, self.cuda = spec, spec.device.startswith("cuda")
        start = time.perf_counter()
        self.predictor = load_predictor(spec.backend, config=spec.config, weights=spec.weights, model=spec.model,
                                        device=spec.device, threads=spec.threads, precision=spec.precision,
                                        mask_format=spec.mask_format, score_thresh=None)
        self.startup_s = time.perf_counter() - start
        if spec.min_size:
            self.predictor.params = dataclasses.replace(self.predictor.params, min_size=spec.min_size,
                                                        max_size=spec.max_size)
        images = [read_image(p)[0] for p in spec.images]
        if spec.batch > len(images):  # bench.run refuses this first; a row never counts images it did not run
            raise InstsegError(f"batch {spec.batch} needs at least {spec.batch} images, {len(images)} given")
        self.batches = [images[i:i + spec.batch] for i in range(0, len(images) - spec.batch + 1, spec.batch)]
        self.timed = first  # timed iterations of the row so far: rounds continue the cycle over the batches
        for i in range(spec.warmup):
            self._iteration(self.batches[i % len(self.batches)])

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def _iteration(self, chunk: list) -> tuple[float, float, float, int, tuple[int, int]]:
        """One pass of the predictor's stages over ``chunk``, each stage timed (a GPU synchronised after
        each): preprocess, model and postprocess seconds, detections, padded input HxW."""
        predictor = self.predictor
        t0 = time.perf_counter()
        batch = predictor.preprocess_batch(chunk)
        self._sync()
        t1 = time.perf_counter()
        raw = predictor.runner.run(batch)
        self._sync()
        t2 = time.perf_counter()
        results = predictor.postprocess_batch(batch, raw)
        self._sync()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, sum(len(r) for r in results), tuple(batch.images.shape[2:])

    def measure(self, iters: int) -> dict:
        """One round: ``iters`` timed iterations, raw samples in seconds."""
        samples: dict[str, list[float]] = {"pre_s": [], "model_s": [], "post_s": [], "end_to_end_s": []}
        detections, input_hws = 0, set()
        for _ in range(iters):
            pre, model, post, n, hw = self._iteration(self.batches[self.timed % len(self.batches)])
            self.timed += 1
            for key, value in (("pre_s", pre), ("model_s", model), ("post_s", post),
                               ("end_to_end_s", pre + model + post)):
                samples[key].append(value)
            detections += n
            input_hws.add(hw)
        out = {**samples, "detections": detections, "input_hws": sorted(input_hws)}
        if self.spec.batch > 1:  # throughput mode: also the same batches with host work overlapped
            out["overlapped_s"], out["overlapped_images"] = self._overlapped(iters)
        return out

    def _overlapped(self, iters: int) -> tuple[float, int]:
        """Seconds and images of ``iters`` batches through runtime.pipeline (reading and preprocessing
        the next batch and postprocessing the previous one while the model runs)."""
        from instseg_deploy.runtime.pipeline import predict_stream

        chunks = [self.batches[(self.timed + i) % len(self.batches)] for i in range(iters)]
        images = [image for chunk in chunks for image in chunk]
        start = time.perf_counter()
        for prediction in predict_stream(self.predictor, images, lambda image: image, batch_size=self.spec.batch):
            if prediction.error is not None:
                raise prediction.error
        self._sync()
        return time.perf_counter() - start, len(images)

    def final(self) -> dict:
        info = {"startup_s": self.startup_s, "peak_rss_mb": peak_rss_mb()}
        if self.cuda:
            import torch

            info["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return info


def _serve(spec: RowSpec, first: int, conn, parent_pid: int) -> None:
    """Child main: load and warm up, then answer ("measure", n) and ("stop", None) until stopped."""
    die_with_parent(parent_pid)  # a killed bench must not leave its rows loading and measuring
    try:
        session = _RowSession(spec, first)
        conn.send(("ready", None))
        while True:
            command, iters = conn.recv()
            if command == "stop":
                conn.send(("done", session.final()))
                return
            conn.send(("samples", session.measure(iters)))
    except BaseException as e:  # report any failure to the parent instead of dying silently
        conn.send(("error", str(e) if isinstance(e, InstsegError) else f"{type(e).__name__}: {e}"))


class RowProcess:
    """Parent side of one row: a spawned process that holds the loaded model between rounds."""

    def __init__(self, spec: RowSpec, timeout_s: float, first: int = 0):
        self.spec, self.timeout_s = spec, timeout_s
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        # Thread pools read these at import, before the child's code can set them.
        env = {k: str(spec.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.process = ctx.Process(target=_serve, args=(spec, first, child_conn, os.getpid()),
                                       daemon=True)
            self.process.start()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child_conn.close()  # so a child that dies shows here as end of file, not as a hang
        self._expect("ready")

    def _expect(self, kind: str):
        try:
            if self.conn.poll(self.timeout_s):
                status, payload = self.conn.recv()
            else:
                status, payload = "error", f"no answer in {self.timeout_s:.0f} s"
        except EOFError:
            self.process.join(5)
            status, payload = "error", f"the row's process died (exit code {self.process.exitcode})"
        if status != kind:
            self.kill()
            raise RowError(f"benchmark row {self.spec.label} (batch {self.spec.batch}, {self.spec.threads} threads): "
                           f"{payload}")
        return payload

    def _ask(self, command: str, iters: int | None, answer: str):
        try:
            self.conn.send((command, iters))
        except OSError:  # the child is gone; reading shows how it ended
            pass
        return self._expect(answer)

    def measure(self) -> dict:
        return self._ask("measure", self.spec.iters, "samples")

    def stop(self) -> dict:
        info = self._ask("stop", None, "done")
        self.process.join(30)
        return info

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


def measure_rows(specs: list[RowSpec], rounds: int, progress: Optional[Callable[[str], None]] = None,
                 after_round: Optional[Callable[[], None]] = None, processes: int = 1,
                 timeout_s: float = 3600) -> list[dict]:
    """Measure every row ``rounds`` times, round-robin over the rows; one table row per spec (see
    :func:`merge_rounds`). The rounds are split among ``processes`` successive processes per row.
    Rows are started (loaded, warmed up) one at a time, so startup times and warm-ups do not overlap.
    ``after_round`` runs between rounds, while every row is idle."""
    say = progress or (lambda _: None)
    processes = max(1, min(processes, rounds))
    parts: list[list[dict]] = [[] for _ in specs]
    infos: list[list[dict]] = [[] for _ in specs]
    done = 0
    for generation in range(processes):
        share = rounds * (generation + 1) // processes - done
        workers: list[RowProcess] = []
        try:
            for i, spec in enumerate(specs):
                say(f"process {generation + 1}/{processes}: loading and warming up row {i + 1}/{len(specs)}: "
                    f"{_describe(spec)}")
                workers.append(RowProcess(spec, timeout_s, first=done * spec.iters))
            for r in range(done, done + share):
                for i, worker in enumerate(workers):
                    say(f"round {r + 1}/{rounds}, row {i + 1}/{len(specs)}: {_describe(worker.spec)}")
                    parts[i].append(worker.measure())
                if after_round:
                    after_round()
            for i, worker in enumerate(workers):
                infos[i].append(worker.stop())
        finally:
            for worker in workers:
                worker.kill()
        done += share
    return [merge_rounds(spec, p, info) for spec, p, info in zip(specs, parts, infos)]


def _describe(spec: RowSpec) -> str:
    return f"{spec.label}, batch {spec.batch}, {spec.threads} thread(s)"


def merge_rounds(spec: RowSpec, parts: list[dict], infos: list[dict]) -> dict:
    """One table row from the rounds of one row (``infos``: what each of its processes reported at
    the end): latency statistics over all samples, the median startup, the largest peak memory, and
    each round's end-to-end p50."""
    end_to_end = [t for p in parts for t in p["end_to_end_s"]]
    model_only = [t for p in parts for t in p["model_s"]]
    # Padded network inputs seen (images of other aspect ratios pad differently); the largest by area.
    input_hws = sorted({tuple(hw) for p in parts for hw in p["input_hws"]})
    row = {"backend": spec.backend, "label": spec.label, "batch": spec.batch, "threads": spec.threads,
           "input_hw": list(max(input_hws, key=lambda hw: hw[0] * hw[1])),
           "input_hws": [list(hw) for hw in input_hws], "rounds": len(parts), "processes": len(infos),
           "startup_s": statistics.median(i["startup_s"] for i in infos),
           "end_to_end_ms": latency_stats(end_to_end), "model_ms": latency_stats(model_only),
           # Host work around the model (per batch): resize/normalise/pad, and boxes + masks afterwards.
           "pre_ms": latency_stats([t for p in parts for t in p["pre_s"]]),
           "post_ms": latency_stats([t for p in parts for t in p["post_s"]]),
           "mask_format": spec.mask_format,
           "images_per_s": spec.batch * len(end_to_end) / sum(end_to_end),
           "model_images_per_s": spec.batch * len(model_only) / sum(model_only),
           "detections_per_image": sum(p["detections"] for p in parts) / (len(end_to_end) * spec.batch),
           "peak_rss_mb": max(i["peak_rss_mb"] for i in infos),
           "overlapped_images_per_s": (sum(p["overlapped_images"] for p in parts)
                                       / sum(p["overlapped_s"] for p in parts)) if "overlapped_s" in parts[0] else None,
           "round_p50_ms": [latency_stats(p["end_to_end_s"])["p50"] for p in parts]}
    if "gpu_peak_mb" in infos[0]:
        row["gpu_peak_mb"] = max(i["gpu_peak_mb"] for i in infos)
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


def image_paths(folder: Path) -> tuple[str, ...]:
    from instseg_deploy.image_io import list_images

    return tuple(str(p) for p in list_images([folder]))
