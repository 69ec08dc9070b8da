"""Build progress: what the engine builder reports, and TensorRT's IProgressMonitor feeding it."""

from __future__ import annotations

from typing import Protocol


class BuildProgress(Protocol):
    """What the builder reports (TensorRT's IProgressMonitor phases, plus calibration)."""

    def phase_start(self, phase: str, parent: str | None, num_steps: int) -> None: ...

    def step(self, phase: str, step: int) -> None: ...

    def phase_finish(self, phase: str) -> None: ...


class Cancelled:
    """Set from the progress monitor when the user presses Ctrl-C during a build."""

    def __init__(self):
        self.flag = False


def progress_monitor(trt, sink: BuildProgress, cancelled: Cancelled):
    """trt.IProgressMonitor forwarding to ``sink``; Ctrl-C during a step cancels the build."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            sink.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            try:
                sink.step(phase_name, step)
            except KeyboardInterrupt:
                cancelled.flag = True
            return not cancelled.flag  # False asks TensorRT to stop the build

        def phase_finish(self, phase_name):
            sink.phase_finish(phase_name)

    return Monitor()
