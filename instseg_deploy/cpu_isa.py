"""This machine's CPU model and x86 ISA, from /proc/cpuinfo: which int8/bf16 kernels it can run."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

# The x86 features that decide which kernels run (in /proc/cpuinfo's flags), in the order a summary lists them.
ISA_FLAGS = (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512-VNNI"),
             ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"),
             ("amx_int8", "AMX-INT8"))
# Families a summary names as missing when the CPU has none of their flags: what int8/bf16 speed hinges on.
MISSING = (("AVX-512", ("avx512f",)), ("VNNI", ("avx512_vnni", "avx_vnni")), ("BF16", ("avx512_bf16", "amx_bf16")),
           ("AMX", ("amx_tile", "amx_bf16", "amx_int8")))


@dataclass(frozen=True)
class CpuIsa:
    model: str  # "model name" from cpuinfo
    features: tuple[str, ...] | None  # names from ISA_FLAGS the CPU has; None: no flags known (not x86 Linux)
    missing: tuple[str, ...] = ()  # families of MISSING it has none of

    @property
    def summary(self) -> str:
        """E.g. "AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX", or "unknown"."""
        if self.features is None:
            return "unknown"
        have = ", ".join(self.features) or "none of AVX2/AVX-512/VNNI/BF16/AMX"
        return have + ("; " + ", ".join(f"no {m}" for m in self.missing) if self.missing else "")

    @property
    def int8_pairs_saturate(self) -> bool:
        """Whether int8 kernels here sum products pairwise in int16 (vpmaddubsw: x86 without VNNI), which
        saturates where two uint8 x int8 products add up past 32767; False where the ISA is unknown."""
        return self.features is not None and "VNNI" in self.missing


def parse_cpuinfo(text: str) -> CpuIsa:
    """The CPU model and ISA from /proc/cpuinfo ``text`` (its first processor's "model name" and "flags")."""
    model, flags = "unknown", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and flags is None:
            flags = set(value.split())
    if flags is None:
        return CpuIsa(model, None)
    features = tuple(name for flag, name in ISA_FLAGS if flag in flags)
    missing = tuple(family for family, any_of in MISSING if not flags.intersection(any_of))
    return CpuIsa(model, features, missing)


def cpu_isa() -> CpuIsa:
    """This machine's CPU model and ISA (from /proc/cpuinfo on Linux; elsewhere the ISA is "unknown")."""
    try:
        isa = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        isa = CpuIsa("unknown", None)
    return isa if isa.model != "unknown" else CpuIsa(platform.processor() or "unknown", isa.features, isa.missing)
