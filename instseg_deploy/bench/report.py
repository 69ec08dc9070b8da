"""Benchmark rows as a rich table, JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.table import Table

from instseg_deploy.atomic import atomic_path, write_json, write_text
from instseg_deploy.bench.machine import cpu_line

# "peak": the compute type and GFLOP/s (GOP/s for int8) the row's "% peak" is against, e.g. "bf16 382".
# "img/s overlap": batch > 1 rows run again with host work overlapped with the model (runtime.pipeline).
# "pre p50" / "post p50": host work around the model per batch (resize + pad; boxes + masks in the row's
# mask format); "host %": their share of the end-to-end p50.
COLUMNS = ("backend", "batch", "threads", "img/s", "img/s overlap", "e2e mean", "e2e p50", "e2e p90", "e2e p99",
           "model p50", "pre p50", "post p50", "host %", "startup s", "RSS MB", "GFLOP/img", "GFLOP/s", "peak",
           "% peak")


def columns(result: dict) -> tuple[str, ...]:
    """COLUMNS, plus the GPU's peak memory where the rows ran on CUDA."""
    return COLUMNS + (("GPU MB",) if any("gpu_peak_mb" in r for r in result["rows"]) else ())


def cells(row: dict) -> list[str]:
    e, m = row["end_to_end_ms"], row["model_ms"]
    overlapped = row.get("overlapped_images_per_s")
    values = [row["label"], str(row["batch"]), str(row["threads"]), f"{row['images_per_s']:.2f}",
              "-" if overlapped is None else f"{overlapped:.2f}", f"{e['mean']:.1f}",
              f"{e['p50']:.1f}", f"{e['p90']:.1f}", f"{e['p99']:.1f}", f"{m['p50']:.1f}", *_host_cells(row),
              f"{row['startup_s']:.2f}",
              f"{row['peak_rss_mb']:.0f}", f"{row['gflops_per_image']:.1f}", f"{row['achieved_gflops_per_s']:.1f}",
              _peak_cell(row), "-" if row["percent_of_peak"] is None else f"{row['percent_of_peak']:.1f}"]
    return values + ([f"{row['gpu_peak_mb']:.0f}"] if "gpu_peak_mb" in row else [])


def _host_cells(row: dict) -> list[str]:
    if "pre_ms" not in row:  # written before host time was measured apart
        return ["-", "-", "-"]
    pre, post = row["pre_ms"]["p50"], row["post_ms"]["p50"]
    return [f"{pre:.1f}", f"{post:.1f}", f"{100 * (pre + post) / row['end_to_end_ms']['p50']:.1f}"]


def _peak_cell(row: dict) -> str:
    if "peak_compute" not in row:  # written before peaks by compute type: all against the f32 peak
        return "f32"
    peak = row["peak_gflops_per_s"]
    return f"{row['peak_compute']} {peak:.0f}" if peak is not None else f"{row['peak_compute']} n/a"


def _peak_source(result: dict) -> str:
    # Results written before peak_source existed were all CPU sgemm peaks.
    return result.get("peak_source", f"float32 sgemm, {result['peak_threads']} threads")


def peaks_line(result: dict) -> str:
    """Every peak of the run with what it measured, e.g. "f32 105 GFLOP/s (float32 sgemm, 2 threads); int8 648
    GOP/s (int8 GEMM ... through OpenVINO ..., runtime precision u8)"."""
    sources = result.get("peak_sources_by_compute") or {"f32": _peak_source(result)}
    by_compute = result.get("peaks_by_compute") or {"f32": {result["peak_threads"]: result["peak_gflops_per_s"]}}
    parts = []
    for compute, source in sources.items():
        values = [v for v in by_compute.get(compute, {}).values() if v is not None]
        unit = "GOP/s" if compute == "int8" else "GFLOP/s"
        name = compute.replace("_", " ")
        parts.append(f"{name} {max(values):.0f} {unit} ({source})" if values else f"{name}: {source}")
    return "; ".join(parts)


def header(result: dict) -> str:
    """The CPU (model and ISA) the run measured, and its peaks."""
    machine = result.get("machine") or {}
    gpu = f"; GPU: {machine['gpu']}" if machine.get("gpu") else ""
    return f"{cpu_line(machine)}{gpu}. Peaks measured in this run: {peaks_line(result)}."


def rich_table(result: dict) -> Table:
    table = Table(title=f"instseg bench: input {result['input']}, latencies in ms", caption=header(result))
    for c in columns(result):
        table.add_column(c, justify="left" if c == "backend" else "right", no_wrap=c in ("backend", "peak"))
    for row in result["rows"]:
        table.add_row(*cells(row))
    return table


def markdown(result: dict) -> str:
    lines = [f"Input: {result['input']}. Latencies in ms; img/s end to end (preprocess + model + postprocess); "
             f"model p50 is the backend's run alone; % peak is against the peak of the row's own precision "
             f"(column peak). {header(result)}", "",
             "| " + " | ".join(columns(result)) + " |", "|" + "---|" * len(columns(result))]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in result["rows"]]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, json_path: str | os.PathLike | None, markdown_path: str | os.PathLike | None,
                  plot_path: str | os.PathLike | None) -> None:
    if json_path:
        write_json(json_path, result)
    if markdown_path:
        write_text(markdown_path, markdown(result))
    if plot_path:
        plot(result, Path(plot_path))


def plot(result: dict, path: Path) -> None:
    """Bars of end-to-end p50 with p90/p99 whiskers, and images/s, one bar per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [f"{r['label']}\nb{r['batch']} t{r['threads']}" for r in rows]
    p50 = [r["end_to_end_ms"]["p50"] for r in rows]
    p90 = [r["end_to_end_ms"]["p90"] for r in rows]
    p99 = [r["end_to_end_ms"]["p99"] for r in rows]
    model = [r["model_ms"]["p50"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) * 2), 4.5))
    x = range(len(rows))
    ax1.bar(x, p50, color="#4c72b0", label="end to end p50")
    ax1.bar(x, model, color="#dd8452", width=0.4, label="model only p50")
    ax1.errorbar(x, p50, yerr=[[0] * len(rows), [b - a for a, b in zip(p50, p99)]], fmt="none", ecolor="black",
                 capsize=4, label="p99")
    ax1.scatter(x, p90, marker="_", color="black", s=200, label="p90")
    ax1.set_xticks(list(x), names, fontsize=8)
    ax1.set_ylabel("latency per batch (ms)")
    ax1.legend(fontsize=8)
    ax2.bar(x, [r["images_per_s"] for r in rows], color="#55a868")
    for i, r in enumerate(rows):
        if r["percent_of_peak"] is not None:
            ax2.text(i, r["images_per_s"], f"{r['percent_of_peak']:.0f}% of {r.get('peak_compute', 'f32')} peak",
                     ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(list(x), names, fontsize=8)
    ax2.set_ylabel("images / s (end to end)")
    fig.suptitle(f"instseg bench, input {result['input']}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def load(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
