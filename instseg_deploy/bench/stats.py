"""Latency statistics."""

from __future__ import annotations

import numpy as np


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """mean / p50 / p90 / p99 in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99))}
