"""`instseg export --to trt`: the progress display and the summary line around ``export.trt.engine_export``.

`cli/export.py` owns the options and builds the :class:`TrtExportRequest`; the work (checks,
ONNX export, build, atomic writes) is library code that reports through callbacks.
"""

from __future__ import annotations

import contextlib
from typing import Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from instseg_deploy.cli.common import console
from instseg_deploy.export.trt.engine_export import BUILD_STAGE, TrtExportRequest, TrtExportResult
from instseg_deploy.runtime.trt.profiles import IMAGE_INPUT


class RichBuildProgress:
    """TensorRT's build phases (and calibration) as progress bars, indented by nesting depth."""

    def __init__(self, progress: Optional[Progress]):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}
        self.depth: dict[str, int] = {}

    def phase_start(self, phase: str, parent: Optional[str], num_steps: int) -> None:
        if self.progress is None:
            return
        self.depth[phase] = self.depth.get(parent, -1) + 1 if parent else 0
        label = "  " * self.depth[phase] + phase
        self.totals[phase] = max(num_steps, 1)
        self.tasks[phase] = self.progress.add_task(label, total=self.totals[phase])

    def step(self, phase: str, step: int) -> None:
        if phase in self.tasks:
            self.progress.update(self.tasks[phase], completed=step + 1)

    def phase_finish(self, phase: str) -> None:
        task = self.tasks.pop(phase, None)
        if task is not None:
            if self.depth.get(phase, 0) == 0:
                self.progress.update(task, completed=self.totals[phase])
            else:
                self.progress.remove_task(task)  # keep the display to the top-level phases


def _build_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


class RichExportProgress(RichBuildProgress):
    """The export's stages: a spinner while tracing to ONNX, then the build's progress bars."""

    def __init__(self, stack: contextlib.ExitStack):
        super().__init__(None)
        self.stack = stack
        self.active: contextlib.ExitStack | None = None

    def stage(self, name: str, message: str) -> None:
        if self.active is not None:
            self.active.close()
        self.active = self.stack.enter_context(contextlib.ExitStack())
        if name == BUILD_STAGE:
            console.print(message, highlight=False)
            self.progress = self.active.enter_context(_build_progress())
        else:
            self.active.enter_context(console.status(message))


def export_trt(request: TrtExportRequest) -> TrtExportResult:
    """Run the export with the progress display and print what was written."""
    from instseg_deploy.export.trt.engine_export import export_trt_engine
    from instseg_deploy.quantize.fp16 import convert_fp16

    with contextlib.ExitStack() as stack:
        # TensorRT 11 builds FP16 only from an FP16-typed ONNX: our own conversion (quantize.fp16), passed in
        # because export must not import quantize (quantize already imports export's stage names)
        result = export_trt_engine(request, RichExportProgress(stack), fp16_converter=convert_fp16)
    images = result.profiles[IMAGE_INPUT]
    console.print(f"wrote {result.engine} ({result.size_bytes / 2**20:.1f} MiB, {result.precision.precision}, images "
                  f"{'x'.join(map(str, images.min))} .. {'x'.join(map(str, images.max))}) and {result.sidecar.name}",
                  highlight=False, markup=False)
    return result
