"""The warning for an INT8 file whose 8-bit weights this CPU's int8 kernels saturate.

x86 CPUs without VNNI multiply int8 pairs with vpmaddubsw, which sums two uint8 x int8 products in
int16: with 8-bit weights, 2 x 255 x 127 does not fit and the sum is clamped. On this project's AVX2
EPYC that put the fixture model's FPN features 14-19% off the file's exact (float-simulated) result,
more than the quantization itself, and cost 0.36 bbox AP on a generated set (benchmarks/int8_kernels.py);
7-bit weights (2 x 255 x 64 fits) brought ORT's kernels within 2% of the exact result.
"""

from __future__ import annotations

import logging
from typing import Any

from instseg_deploy.cpu_isa import CpuIsa, cpu_isa
from instseg_deploy.model_file.metadata import WEIGHT_BITS_KEY

log = logging.getLogger(__name__)
FIX = "for CPUs like this one, quantize the FP32 model with `instseg quantize --weight-bits 7`"


def saturating_int8_weights(meta: dict[str, Any], isa: CpuIsa | None = None) -> bool:
    """Whether ``meta`` is an INT8 file with 8-bit weights and ``isa`` (default: this CPU's) saturates them."""
    if meta.get("precision") != "int8" or meta.get("int8", {}).get(WEIGHT_BITS_KEY, 8) != 8:
        return False
    return (isa or cpu_isa()).int8_pairs_saturate


def warn_if_int8_saturates(meta: dict[str, Any], model: str, backend: str, isa: CpuIsa | None = None) -> None:
    """Log a warning when ``backend``'s CPU kernels will saturate ``model``'s 8-bit weights."""
    if saturating_int8_weights(meta, isa):
        log.warning("%s: this CPU has no VNNI, so %s's int8 kernels saturate the file's 8-bit weights and lose "
                    "accuracy (0.36 bbox AP on our benchmark); %s", model, backend, FIX)
