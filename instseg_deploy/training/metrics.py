"""Training metrics: JSON lines in OUT/metrics.json, as detectron2's JSONWriter writes them."""

from __future__ import annotations

import json
import statistics
from collections import deque
from pathlib import Path
from typing import Any

from instseg_deploy.atomic import write_text


class MetricsLog:
    """Window medians of the losses and timings, written every ``period`` iterations."""

    def __init__(self, path: Path | None, period: int):
        self.path = path  # None on ranks other than 0
        self.period = max(period, 1)
        self.window: dict[str, deque] = {}

    def truncate_after(self, start_iter: int) -> None:
        """On resume: drop lines of iterations the resumed run will redo."""
        if self.path is None or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("iteration", -1) < start_iter:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the interruption
        write_text(self.path, "".join(line + "\n" for line in kept))

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.window.setdefault(name, deque(maxlen=self.period)).append(float(value))

    def median(self, name: str) -> float:
        values = self.window.get(name)
        return statistics.median(values) if values else float("nan")

    def smoothed(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.window.items() if values}

    def write(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
