"""Benchmarking a model server: latency p50/p90/p99 and throughput at several client concurrencies,
beside the same model in this process, on the same images (`instseg bench --backend triton`).

Every level runs ``concurrency`` client threads, each sending ``requests`` one-image requests in
turn over the image list; each answer is compared with the single-client answer of the same image,
so a server that mixes up batched requests is caught, not just timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instseg_deploy.bench.stats import latency_stats
from instseg_deploy.errors import InstsegError
from instseg_deploy.runtime.triton.client import TritonConnection
from instseg_deploy.runtime.triton.contract import Response


@dataclass
class LoadLevel:
    """One row: ``concurrency`` clients x ``requests`` each; latencies of the successful requests."""

    label: str
    concurrency: int
    requests: int
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    differing: int = 0  # answers unlike the single-client answer of the same image
    wall_s: float = 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second over the level's wall time."""
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0

    def row(self) -> dict:
        stats = latency_stats(self.latencies_s) if self.latencies_s else {}
        return {"label": self.label, "concurrency": self.concurrency, "requests": self.concurrency * self.requests,
                "failed": len(self.failures), "differing": self.differing, "img_per_s": round(self.throughput, 3),
                **{f"{k}_ms": round(v, 2) for k, v in stats.items()}}


def same_answer(a: Response, b: Response) -> bool:
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.classes, b.classes) and a.rle_counts == b.rle_counts)


def measure_server(make_connection: Callable[[], TritonConnection], images: Sequence[np.ndarray],
                   concurrencies: Sequence[int], requests: int, warmup: int = 2,
                   on_message: Callable[[str], None] = lambda m: None) -> tuple[list[Response], list[LoadLevel]]:
    """(single-client answers per image, one :class:`LoadLevel` per concurrency)."""
    connection = make_connection()
    for image in list(images)[:warmup]:
        connection.infer(image)
    reference = [connection.infer(image) for image in images]
    levels = []
    for concurrency in concurrencies:
        on_message(f"server: {concurrency} client(s) x {requests} requests")
        levels.append(_level(make_connection, images, reference, concurrency, requests))
    return reference, levels


def _level(make_connection, images, reference, concurrency: int, requests: int) -> LoadLevel:
    level = LoadLevel("server", concurrency, requests)
    lock = threading.Lock()
    start_together = threading.Barrier(concurrency + 1)

    def client(k: int) -> None:
        connection = make_connection()
        start_together.wait()
        for j in range(requests):
            i = (k + j) % len(images)
            begin = time.perf_counter()
            try:
                answer = connection.infer(images[i])
            except InstsegError as e:
                with lock:
                    level.failures.append(str(e))
                continue
            seconds = time.perf_counter() - begin
            with lock:
                level.latencies_s.append(seconds)
                level.differing += not same_answer(answer, reference[i])

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    start_together.wait()
    begin = time.perf_counter()
    for t in threads:
        t.join()
    level.wall_s = time.perf_counter() - begin
    return level


def measure_in_process(predictor, images: Sequence[np.ndarray], requests: int, warmup: int = 2) -> LoadLevel:
    """The same model in this process, one image at a time (the latency a server adds to)."""
    for image in list(images)[:warmup]:
        predictor(image)
    level = LoadLevel("in-process", 1, requests)
    begin = time.perf_counter()
    for j in range(requests):
        start = time.perf_counter()
        predictor(images[j % len(images)])
        level.latencies_s.append(time.perf_counter() - start)
    level.wall_s = time.perf_counter() - begin
    return level


def markdown_table(levels: Sequence[LoadLevel]) -> str:
    header = "| where | clients | requests | failed | differing | p50 ms | p90 ms | p99 ms | img/s |"
    lines = [header, "|" + "---|" * 9]
    for level in levels:
        r = level.row()
        lines.append(f"| {r['label']} | {r['concurrency']} | {r['requests']} | {r['failed']} | {r['differing']} | "
                     f"{r.get('p50_ms', float('nan')):.1f} | {r.get('p90_ms', float('nan')):.1f} | "
                     f"{r.get('p99_ms', float('nan')):.1f} | {r['img_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class ServerBenchRequest:
    """`instseg bench --backend triton`: the server at ``url``; ``compare_model`` (an exported file) is run
    in this process on the same images for the side-by-side row; ``images`` a folder (default: the
    generated bench images)."""

    url: str
    protocol: str = "http"
    model_name: str = "instseg"
    concurrencies: tuple[int, ...] = (1, 4, 16)
    requests: int = 50
    images: Path | None = None
    compare_model: Path | None = None
    threads: int = 0
    timeout_s: float = 120.0


@dataclass
class ServerBenchResult:
    levels: list[LoadLevel]
    in_process: LoadLevel | None

    def rows(self) -> list[dict]:
        return [level.row() for level in ([self.in_process] if self.in_process else []) + self.levels]

    def overhead(self) -> float | None:
        """Server p50 latency at concurrency 1 over the in-process p50, minus 1 (0.1 = 10% slower)."""
        one = next((lv for lv in self.levels if lv.concurrency == 1 and lv.latencies_s), None)
        if one is None or self.in_process is None:
            return None
        return float(np.median(one.latencies_s) / np.median(self.in_process.latencies_s) - 1)


def run_server_bench(request: ServerBenchRequest, on_message: Callable[[str], None] = lambda m: None
                     ) -> ServerBenchResult:
    import tempfile

    from instseg_deploy.bench.inputs import generated_images
    from instseg_deploy.image_io import list_images, read_image
    from instseg_deploy.runtime.triton.client import ServerAddress

    if any(c < 1 for c in request.concurrencies) or request.requests < 1:
        raise InstsegError("--concurrency values and --requests must be >= 1")
    address = ServerAddress(request.url, request.protocol, request.model_name, request.timeout_s)
    with tempfile.TemporaryDirectory(prefix="instseg-serve-bench-") as tmp:
        folder = request.images or generated_images(Path(tmp))
        images = [read_image(p)[0] for p in list_images([folder])]
    TritonConnection(address).metadata()  # a clear error now if nothing (or no instseg model) is there
    _, levels = measure_server(lambda: TritonConnection(address), images, request.concurrencies, request.requests,
                               on_message=on_message)
    in_process = None
    if request.compare_model is not None:
        from instseg_deploy.runtime.factory import load_predictor

        on_message(f"in-process: {request.compare_model.name}")
        backend = "openvino" if request.compare_model.suffix == ".xml" else "ort"
        predictor = load_predictor(backend, model=request.compare_model, score_thresh=None, threads=request.threads,
                                   mask_format="rle")
        in_process = measure_in_process(predictor, images, request.requests)
        in_process.label = f"in-process {backend}"
    return ServerBenchResult(levels, in_process)
