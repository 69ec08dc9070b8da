"""The bench's CPU ISA line and its per-precision peaks: the cpuinfo parser on fixed text, which peak a row
is set against, the OpenVINO bf16/int8 GEMM peaks (tiny, no timing thresholds) and the report's header."""

from __future__ import annotations

import sys

import pytest

from instseg_deploy.bench.machine import CpuIsa, cpu_isa, cpu_line, parse_cpuinfo

# Two processors each, as /proc/cpuinfo lists them (abridged to the lines the parser and a reader see).
EPYC_ZEN2 = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 23
model		: 49
model name	: AMD EPYC 7742 64-Core Processor
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht \
syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf \
pni pclmulqdq monitor ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm \
extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core bmi1 avx2 smep \
bmi2 cqm rdt_a rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero irperf xsaveerptr \
wbnoinvd arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold \
avic v_vmsave_vmload vgif umip rdpid overflow_recov succor smca

processor	: 1
model name	: AMD EPYC 7742 64-Core Processor
flags		: fpu sse sse2 avx fma avx2
"""

XEON_SPR = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse \
sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology \
nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 \
xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm \
3dnowprefetch cpuid_fault epb cat_l3 cat_l2 cdp_l3 invpcid_single intel_ppin cdp_l2 ssbd mba ibrs ibpb stibp \
ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm \
rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb intel_pt avx512cd sha_ni avx512bw avx512vl \
xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local split_lock_detect avx_vnni \
avx512_bf16 wbnoinvd dtherm ida arat pln pts hfi vnmi avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes \
vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote movdiri movdir64b \
enqcmd fsrm md_clear serialize tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d \
arch_capabilities

processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8480+
"""

EPYC_ZEN4 = """processor	: 0
model name	: AMD EPYC 9B14
flags		: fpu sse sse2 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi \
avx512_vbmi2 avx512_vnni avx512_bitalg avx512_vpopcntdq
"""

ARM = """processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
"""


def test_isa_of_an_avx2_only_epyc():
    isa = parse_cpuinfo(EPYC_ZEN2)
    assert isa.model == "AMD EPYC 7742 64-Core Processor"
    assert isa.features == ("AVX2", "FMA")
    assert isa.summary == "AVX2, FMA; no AVX-512, no VNNI, no BF16, no AMX"


def test_isa_of_a_sapphire_rapids_xeon_with_amx():
    isa = parse_cpuinfo(XEON_SPR)
    assert isa.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert isa.features == ("AVX2", "FMA", "AVX-512", "AVX512-VNNI", "AVX-VNNI", "AVX512-BF16", "AMX-BF16", "AMX-INT8")
    assert isa.missing == () and isa.summary == ", ".join(isa.features)  # nothing missing: no "no ..." part


def test_isa_of_an_avx512_epyc_without_amx_and_of_a_cpu_without_x86_flags():
    assert parse_cpuinfo(EPYC_ZEN4).summary == "AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX"
    arm = parse_cpuinfo(ARM)
    assert arm == CpuIsa("unknown", None) and arm.summary == "unknown"
    assert parse_cpuinfo("").summary == "unknown"


def test_cpu_isa_of_this_machine_is_a_summary_whatever_it_has():
    isa = cpu_isa()
    assert isa.model and isa.summary  # no assumption about this machine's features
    assert cpu_line({"cpu": "AMD EPYC 9B14", "isa": parse_cpuinfo(EPYC_ZEN4).summary}) == (
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
def test_openvino_gemm_peaks_are_measured(compute):
    pytest.importorskip("openvino")
    from instseg_deploy.bench.flops import measure_openvino_peak

    peak = measure_openvino_peak(compute, threads=1, size=128, repeats=2)
    assert peak.gflops is not None and peak.gflops > 0
    assert peak.kernel is not None and f"{compute} GEMM 128x128x128 through OpenVINO" in peak.source
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
