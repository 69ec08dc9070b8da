"""How many CPU threads torch uses for inference: ``--threads`` when given, else the cores not already busy.

torch's default (one thread per core) spins its OpenMP pool against whatever else runs: on a 2-core machine
with one other busy process, 2 threads measured several times slower than 1. The 1-minute load average
(minus this process, which has not started working yet) says how many cores are taken.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """The cores this process may use minus those other work keeps busy, at least 1."""
    cores = available_cores()
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


def set_torch_threads(threads: int = 0) -> int:
    """Intra-op threads for torch (``threads`` > 0, else :func:`default_threads`); inter-op threads are 1
    (one image's ops at a time). Returns the count set."""
    count = threads if threads > 0 else default_threads()
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work of the process
        pass
    return count
