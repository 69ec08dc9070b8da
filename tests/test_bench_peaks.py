"""The bench's CPU line and its per-precision peaks: which peak a row is set against, the OpenVINO bf16/int8
GEMM and convolution peaks (tiny, no timing thresholds) and the report's header."""

from __future__ import annotations

import sys

import pytest

from instseg_deploy.bench.machine import cpu_line


def test_cpu_line_names_the_model_and_its_isa():
    assert cpu_line({"cpu": "AMD EPYC 9B14", "isa": "AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX"}) == (
        "CPU: AMD EPYC 9B14 (AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX)")
    assert cpu_line({"cpu": "EPYC"}) == "CPU: EPYC"  # a result written before the ISA was recorded


@pytest.mark.parametrize("label, compute", [
    ("torch fp32", "f32"), ("ort fp32", "f32"), ("ort fp16", "f32"), ("ort int8", "int8"), ("ort uint8", "int8"),
    ("openvino f32", "f32"), ("openvino bf16", "bf16"), ("openvino int8", "int8"), ("OpenVINO BF16", "bf16"),
    ("trt", "f32"), ("", "f32")])
def test_each_precision_label_is_set_against_its_own_peak(label, compute):
    from instseg_deploy.bench.models import peak_compute

    assert peak_compute(label) == compute


def test_a_row_percent_is_against_its_compute_types_peak_and_absent_without_one():
    from instseg_deploy.bench.run import set_row_peak

    by_compute = {"f32": {1: 50.0, 2: 100.0}, "bf16": {2: 400.0}, "int8": {2: None}}
    rows = [{"threads": 2, "achieved_gflops_per_s": 20.0} for _ in range(3)]
    for row, compute in zip(rows, ("f32", "bf16", "int8")):
        set_row_peak(row, compute, by_compute)
    assert [(r["peak_compute"], r["peak_gflops_per_s"], r["percent_of_peak"]) for r in rows] == [
        ("f32", 100.0, 20.0), ("bf16", 400.0, 5.0), ("int8", None, None)]


def test_only_the_compute_types_the_rows_use_are_measured(monkeypatch):
    from instseg_deploy.bench import run
    from instseg_deploy.bench.flops import GemmPeak
    from instseg_deploy.bench.rows import RowSpec

    calls = []

    def fake(compute, threads):
        calls.append((compute, threads))
        return GemmPeak(10.0 * threads, f"{compute} fake", {"runtimePrecision": compute})

    monkeypatch.setattr(run, "measure_openvino_peak", fake)
    request = run.BenchRequest(backends=("torch", "ort"), thread_counts=(1, 2))
    common = dict(batch=1, images=(), warmup=0, iters=1, min_size=None, max_size=None)
    specs = [RowSpec(b, label, threads=t, **common) for t in (1, 2)
             for b, label in (("torch", "torch fp32"), ("ort", "ort int8"))]
    by_compute, sources, kernels = run._compute_peaks(request, specs, {1: 5.0, 2: 9.0}, "float32 sgemm", lambda _: 0)
    assert sorted(calls) == [("f32", 1), ("f32", 2), ("int8", 1), ("int8", 2)]  # no bf16: no row runs it
    assert by_compute == {"f32": {1: 5.0, 2: 9.0}, "int8": {1: 10.0, 2: 20.0}, "f32_openvino": {1: 10.0, 2: 20.0}}
    assert sources["f32"] == "float32 sgemm" and sources["int8"] == "int8 fake"
    assert kernels["int8"] == {"runtimePrecision": "int8"}
    calls.clear()
    assert run._compute_peaks(request, specs[:1], {1: 5.0}, "s", lambda _: 0)[0] == {"f32": {1: 5.0}}
    assert calls == []  # f32 rows of torch/ort alone: the sgemm only, no OpenVINO


@pytest.mark.parametrize("compute", ["bf16", "int8"])
def test_openvino_peaks_are_measured_on_a_gemm_and_a_convolution(compute):
    pytest.importorskip("openvino")
    from instseg_deploy.bench.flops import measure_openvino_peak

    peak = measure_openvino_peak(compute, threads=1, size=128, conv=(16, 8), repeats=2)
    assert peak.gflops is not None and peak.gflops > 0
    assert f"{compute} GEMM 128x128x128" in peak.source and f"{compute} 3x3 convolution 16->16 on 8x8" in peak.source
    assert peak.kernel is not None and peak.kernel["layerType"] in ("FullyConnected", "MatMul", "Convolution")
    assert peak.source.startswith(f"{compute} GEMM" if peak.kernel["layerType"] != "Convolution"
                                  else f"{compute} 3x3 convolution")  # the faster one leads, with its kernel
    if compute == "int8":  # FakeQuantize on both inputs really runs an integer kernel: u8 activations, i8 weights
        assert peak.kernel["runtimePrecision"] in ("u8", "i8"), peak.kernel


def test_without_openvino_the_peak_is_absent_with_a_reason(monkeypatch):
    from instseg_deploy.bench.flops import measure_openvino_peak

    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    peak = measure_openvino_peak("int8", threads=1)
    assert peak.gflops is None and "openvino is not importable" in peak.source


def _result() -> dict:
    def row(label, compute, peak, percent):
        e = {"mean": 10.0, "p50": 10.0, "p90": 11.0, "p99": 12.0}
        return {"label": label, "batch": 1, "threads": 2, "images_per_s": 90.0, "end_to_end_ms": e, "model_ms": e,
                "startup_s": 1.0, "peak_rss_mb": 300.0, "gflops_per_image": 1.0, "achieved_gflops_per_s": 80.0,
                "peak_compute": compute, "peak_gflops_per_s": peak, "percent_of_peak": percent}

    return {"input": "128x192 padded", "peak_gflops_per_s": 105.0, "peak_threads": 2,
            "peak_source": "float32 sgemm, 2 threads", "peaks_by_threads": {2: 105.0},
            "peaks_by_compute": {"f32": {2: 105.0}, "bf16": {2: 382.0}, "int8": {2: None}},
            "peak_sources_by_compute": {"f32": "float32 sgemm, 2 threads", "bf16": "bf16 GEMM through OpenVINO",
                                        "int8": "no int8 peak: openvino is not importable"},
            "machine": {"cpu": "AMD EPYC 9B14", "isa": "AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX"},
            "rows": [row("ort fp32", "f32", 105.0, 76.2), row("openvino bf16", "bf16", 382.0, 20.9),
                     row("ort int8", "int8", None, None)]}


def test_the_report_header_names_the_isa_and_each_rows_peak():
    from instseg_deploy.bench.report import markdown, rich_table

    text = markdown(_result())
    head, _, table = text.partition("\n\n")
    assert "CPU: AMD EPYC 9B14 (AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX)" in head
    assert "f32 105 GFLOP/s (float32 sgemm, 2 threads)" in head and "bf16 382 GFLOP/s" in head
    assert "int8: no int8 peak: openvino is not importable" in head
    lines = table.splitlines()
    assert "| peak | % peak |" in lines[0]
    assert lines[2].endswith("| f32 105 | 76.2 |") and lines[3].endswith("| bf16 382 | 20.9 |")
    assert lines[4].endswith("| int8 n/a | - |")
    assert "no AMX" in str(rich_table(_result()).caption)


def test_reports_written_before_peaks_by_compute_still_render():
    from instseg_deploy.bench.report import markdown

    old = _result()
    for key in ("peaks_by_compute", "peak_sources_by_compute"):
        del old[key]
    del old["machine"]["isa"]
    for row in old["rows"]:
        del row["peak_compute"], row["peak_gflops_per_s"]
    old["rows"] = old["rows"][:1]
    text = markdown(old)
    assert "CPU: AMD EPYC 9B14. Peaks measured in this run: f32 105 GFLOP/s (float32 sgemm, 2 threads)." in text
    assert "| f32 | 76.2 |" in text
