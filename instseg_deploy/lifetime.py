"""Child processes that end with their parent: a killed parent (SIGKILL, OOM killer) must not leave
DataLoader workers or benchmark rows running, holding memory and the parent's stdout pipe."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a child process: the kernel SIGKILLs it when its parent dies (Linux; the
    parent is the thread that started it, so start children from a thread that lives as long as they
    should). If the parent has already died (before this ran), exit now.

    ``parent_pid``: ``os.getpid()`` of the parent, taken before the child was started (after the parent
    dies, ``os.getppid()`` names whichever process adopted the child).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl to call: the check below still runs
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

