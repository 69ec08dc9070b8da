"""The warning for INT8 files whose 8-bit weights a CPU without VNNI saturates: which files and CPUs get
it (fixed CPU descriptions, no assumption about this machine), and that both CPU backends give it."""

from __future__ import annotations

import logging

import pytest

from instseg_deploy.cpu_isa import CpuIsa, cpu_isa
from instseg_deploy.runtime.int8_saturation import saturating_int8_weights, warn_if_int8_saturates

AVX2_ONLY = CpuIsa("AMD EPYC 7742", ("AVX2", "FMA"), ("AVX-512", "VNNI", "BF16", "AMX"))
WITH_VNNI = CpuIsa("AMD EPYC 9B14", ("AVX2", "FMA", "AVX-512", "AVX512-VNNI", "AVX512-BF16"), ("AMX",))
NOT_X86 = CpuIsa("unknown", None)


def _int8(**details) -> dict:
    return {"precision": "int8", "int8": {"format": "QDQ", **details}}


@pytest.mark.parametrize("meta, isa, saturates", [
    (_int8(weight_bits=8), AVX2_ONLY, True),
    (_int8(), AVX2_ONLY, True),  # a file written before weight_bits was recorded has 8-bit weights
    (_int8(weight_bits=7), AVX2_ONLY, False),
    (_int8(weight_bits=8), WITH_VNNI, False),
    (_int8(weight_bits=8), NOT_X86, False),
    ({"precision": "fp32"}, AVX2_ONLY, False),
    ({"precision": "fp16"}, AVX2_ONLY, False),
])
def test_which_files_saturate_on_which_cpus(meta, isa, saturates):
    assert saturating_int8_weights(meta, isa) is saturates


def test_the_warning_names_the_file_the_backend_and_the_fix(caplog):
    with caplog.at_level(logging.WARNING, logger="instseg_deploy"):
        warn_if_int8_saturates(_int8(weight_bits=8), "m.int8.onnx", "OpenVINO", AVX2_ONLY)
        warn_if_int8_saturates(_int8(weight_bits=7), "m7.int8.onnx", "OpenVINO", AVX2_ONLY)
        warn_if_int8_saturates(_int8(weight_bits=8), "v.int8.onnx", "OpenVINO", WITH_VNNI)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.startswith("m.int8.onnx: this CPU has no VNNI") and "OpenVINO" in message
    assert "--weight-bits 7" in message


def test_this_machine_gets_the_warning_exactly_when_its_cpu_lacks_vnni(caplog):
    with caplog.at_level(logging.WARNING, logger="instseg_deploy"):
        warn_if_int8_saturates(_int8(weight_bits=8), "m.int8.onnx", "ONNX Runtime")
    assert len(caplog.records) == int(cpu_isa().int8_pairs_saturate)
