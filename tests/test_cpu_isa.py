"""The CPU model and x86 ISA from /proc/cpuinfo text, and which CPUs' int8 kernels saturate 8-bit weights."""

from __future__ import annotations

from instseg_deploy.cpu_isa import CpuIsa, cpu_isa, parse_cpuinfo

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


def test_only_x86_without_vnni_saturates_int8_pairs():
    assert parse_cpuinfo(EPYC_ZEN2).int8_pairs_saturate  # AVX2 only: vpmaddubsw
    assert not parse_cpuinfo(EPYC_ZEN4).int8_pairs_saturate  # AVX512-VNNI
    assert not parse_cpuinfo(XEON_SPR).int8_pairs_saturate
    avx_vnni_only = EPYC_ZEN2.replace(" avx2 ", " avx2 avx_vnni ", 1)  # e.g. Alder Lake: VNNI without AVX-512
    assert not parse_cpuinfo(avx_vnni_only).int8_pairs_saturate
    assert not parse_cpuinfo(ARM).int8_pairs_saturate  # not x86: nothing known, nothing claimed
