"""`instseg doctor`: which backends this machine can run, and for each that it cannot, why and the fix;
with ``--model``, whether TensorRT's ONNX parser would take that graph (a static check, no TensorRT needed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from instseg_deploy.cli.common import user_errors
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg doctor

  instseg doctor --require trt,trt-plugin   (exit status 1 unless both are usable: for scripts and CI)

  instseg doctor --model model.onnx --trt-version 10   (exit status 1 if a node would not parse)
"""

ORT_GPU_INSTALL = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
TORCH_CUDA_INSTALL = "install a CUDA build of torch that matches the driver (the CPU-only wheel cannot use a GPU)"
GPU_FIX = "run on a machine with an NVIDIA GPU and its driver (nvidia-smi must list it)"
# On a machine without one, no GPU package can help: the rows say so and suggest nothing to install.
NO_NVIDIA_GPU = "needs an NVIDIA GPU; none was found"


@dataclass
class Environment:
    """Facts about this machine that decide which backends work (probed once; tests build their own)."""

    torch_version: Optional[str]
    torch_cuda: Optional[str]  # CUDA version torch was built with, None for a CPU-only build
    gpus: list[str]  # names of the visible CUDA devices
    ort_version: Optional[str]
    ort_providers: list[str]
    trt_version: Optional[str]
    trt_problem: Optional[str]  # why `import tensorrt` failed
    plugin_library: Optional[Path]
    plugin_problem: str  # where it was found, or why not and how to build it
    openvino_version: Optional[str] = None
    openvino_capabilities: list[str] = field(default_factory=list)  # the CPU plugin's, e.g. BF16, FP32, INT8
    openvino_problem: Optional[str] = None  # why `import openvino` failed
    openvino_auto_precision: Optional[str] = None  # what --precision auto compiles with here (f32 or bf16)
    nvidia_gpu: bool = True  # an NVIDIA GPU is present (runtime.trt.util.nvidia_gpu_found), usable or not
    int8_pairs_saturate: bool = False  # an x86 CPU without VNNI (cpu_isa.CpuIsa.int8_pairs_saturate)


@dataclass
class BackendStatus:
    key: str  # what `--require` names
    usable: bool
    detail: str
    fix: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def probe_environment(gpu_probe: Optional[Callable[[], bool]] = None) -> Environment:
    """This machine's facts; ``gpu_probe`` says whether an NVIDIA GPU is present (default:
    runtime.trt.util.nvidia_gpu_found)."""
    from instseg_deploy.cpu_isa import cpu_isa
    from instseg_deploy.runtime.trt.plugin_library import describe_plugin_library
    from instseg_deploy.runtime.trt.util import nvidia_gpu_found

    torch_version = torch_cuda = None
    gpus: list[str] = []
    try:
        import torch

        torch_version, torch_cuda = torch.__version__, torch.version.cuda
        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    ort_version, providers = None, []
    try:
        import onnxruntime

        ort_version, providers = onnxruntime.__version__, list(onnxruntime.get_available_providers())
    except ImportError:
        pass
    trt_version = trt_problem = None
    try:
        trt_version = importlib.import_module("tensorrt").__version__
    except ImportError as e:
        trt_problem = "TensorRT is not installed" if e.name == "tensorrt" else f"TensorRT does not import ({e})"
    plugin_path, plugin_problem = describe_plugin_library()
    isa = cpu_isa()
    env = Environment(torch_version, torch_cuda, gpus, ort_version, providers, trt_version, trt_problem,
                      plugin_path, plugin_problem, nvidia_gpu=(gpu_probe or nvidia_gpu_found)(),
                      int8_pairs_saturate=isa.int8_pairs_saturate)
    try:
        from instseg_deploy.runtime.openvino import (
            auto_precision,
            cpu_capabilities,
            error_line,
            import_openvino,
            openvino_version,
            shared_core,
        )

        ov = import_openvino()
        env.openvino_version = openvino_version(ov)
        env.openvino_capabilities = list(cpu_capabilities(shared_core()))
        env.openvino_auto_precision = auto_precision(tuple(env.openvino_capabilities), isa)
    except InstsegError as e:
        env.openvino_problem = str(e)
    except RuntimeError as e:  # the CPU plugin failed to load
        env.openvino_problem = f"OpenVINO does not start its CPU plugin ({error_line(e)})"
    return env


def _gpu_fix(env: Environment) -> str:
    return TORCH_CUDA_INSTALL if env.torch_version is not None and env.torch_cuda is None else GPU_FIX


def _no_gpu(env: Environment) -> str:
    if env.torch_version is not None and env.torch_cuda is None:
        return f"torch {env.torch_version} is a CPU-only build, so no CUDA GPU can be seen"
    return "no CUDA GPU visible (no NVIDIA GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)"


def backend_statuses(env: Environment) -> list[BackendStatus]:
    """One row per backend (and the TensorRT plugin library), in the order `instseg doctor` prints."""
    from instseg_deploy.runtime.int8_saturation import FIX
    from instseg_deploy.runtime.trt.util import TRT_INSTALL

    saturation_note = f"no VNNI on this CPU: its int8 kernels saturate 8-bit weights; {FIX}"
    rows = []
    if env.torch_version is None:
        rows.append(BackendStatus("torch", False, "torch is not installed", "pip install torch"))
    else:
        rows.append(BackendStatus("torch", True, f"torch {env.torch_version} on the CPU"))
        rows.append(BackendStatus("torch-cuda", True, f"torch on {env.gpus[0]}") if env.gpus else
                    BackendStatus("torch-cuda", False, f"torch on a GPU {NO_NVIDIA_GPU}") if not env.nvidia_gpu else
                    BackendStatus("torch-cuda", False, _no_gpu(env), _gpu_fix(env)))
    if env.ort_version is None:
        rows.append(BackendStatus("ort", False, "onnxruntime is not installed", "pip install onnxruntime"))
    else:
        rows.append(BackendStatus("ort", "CPUExecutionProvider" in env.ort_providers,
                                  f"onnxruntime {env.ort_version}, CPUExecutionProvider"))
        if env.int8_pairs_saturate:
            rows[-1].notes.append(saturation_note)
        for key, provider, extra in (("ort-cuda", "CUDAExecutionProvider", None),
                                     ("ort-trt", "TensorrtExecutionProvider", "trt")):
            if not env.nvidia_gpu:
                rows.append(BackendStatus(key, False, f"{provider} {NO_NVIDIA_GPU}"))
            elif provider not in env.ort_providers:
                rows.append(BackendStatus(key, False, f"onnxruntime {env.ort_version} has no {provider} "
                                                      f"(available: {', '.join(env.ort_providers)})", ORT_GPU_INSTALL))
            elif not env.gpus:
                rows.append(BackendStatus(key, False, f"{provider} is present but {_no_gpu(env)}", _gpu_fix(env)))
            elif extra == "trt" and env.trt_version is None:
                rows.append(BackendStatus(key, False, f"{provider} is present but {env.trt_problem}", TRT_INSTALL))
            else:
                rows.append(BackendStatus(key, True, f"{provider} on {env.gpus[0]}"))
    if env.openvino_version is None:
        from instseg_deploy.runtime.openvino import OPENVINO_INSTALL

        rows.append(BackendStatus("openvino", False, env.openvino_problem or "OpenVINO is not installed",
                                  OPENVINO_INSTALL))
    else:
        compute = [c for c in ("FP32", "BF16", "INT8") if c in env.openvino_capabilities]
        status = BackendStatus("openvino", True, f"OpenVINO {env.openvino_version} on the CPU: {', '.join(compute)}")
        if "BF16" not in compute:
            status.notes.append("no native BF16 on this CPU: --precision bf16 and auto run f32")
        elif env.openvino_auto_precision == "f32":
            status.notes.append("--precision auto runs f32 here: bf16's accuracy is measured only on AVX512-BF16 "
                                "CPUs without AMX so far; ask for --precision bf16 to use it")
        elif env.openvino_auto_precision is not None:
            status.notes.append(f"--precision auto runs {env.openvino_auto_precision} here")
        if env.int8_pairs_saturate:
            status.notes.append(saturation_note)
        rows.append(status)
    if not env.nvidia_gpu:
        rows.append(BackendStatus("trt", False, f"TensorRT {NO_NVIDIA_GPU}"))
    elif env.trt_version is None:
        rows.append(BackendStatus("trt", False, env.trt_problem or "TensorRT is not installed", TRT_INSTALL))
    elif not env.gpus:
        rows.append(BackendStatus("trt", False, f"TensorRT {env.trt_version} is installed but {_no_gpu(env)}",
                                  _gpu_fix(env)))
    else:
        status = BackendStatus("trt", True, f"TensorRT {env.trt_version} on {env.gpus[0]}")
        if not env.trt_version.startswith("10."):
            status.notes.append(f"written for TensorRT 10; {env.trt_version} may lack the weakly-typed FP16/INT8 "
                                "flags and implicit calibration")
        rows.append(status)
    if env.plugin_library is not None:
        rows.append(BackendStatus("trt-plugin", True, f"plugin library {env.plugin_problem}"))
    elif not env.nvidia_gpu:
        rows.append(BackendStatus("trt-plugin", False, "plugin library libinstseg_plugins.so not built; it "
                                  f"serves TensorRT engines, and TensorRT {NO_NVIDIA_GPU}"))
    else:
        from instseg_deploy.runtime.trt.plugin_library import BUILD_COMMAND

        rows.append(BackendStatus("trt-plugin", False, "plugin library libinstseg_plugins.so not built (needed for "
                                  "plugin-flavoured engines; --roi-align onnx engines run without it)", BUILD_COMMAND))
    return rows


def print_parsability(model: Path, trt_versions: list[int]) -> bool:
    """Print the static TensorRT parsability check of ``model`` per version; whether every node passed."""
    from instseg_deploy.export.trt.parsability import check

    out = Console(soft_wrap=True, highlight=False)  # one line per problem, for grep
    clean = True
    for major in trt_versions:
        report = check(model, major)
        ops = ", ".join(f"{op} {n}" for op, n in report.op_counts.most_common())
        untyped = f", {report.untyped} with unknown input types (op checked only)" if report.untyped else ""
        changes = report.table["release_changes"]
        changed = f"; with the parser changes of the {', '.join(changes)} release notes" if changes else ""
        out.print(f"TensorRT {major}.x: {report.nodes_checked} nodes checked{untyped} against onnx-tensorrt's "
                  f"operator table ({report.table['revision']}{changed})", markup=False)
        out.print(f"  ops: {ops}", markup=False)
        for p in report.problems:
            out.print(f"  problem: node {p.node or '(graph)'} [{p.op or '-'}]: {p.reason}", markup=False)
        out.print(f"  {len(report.problems)} problem(s)" if report.problems else "  every node parses "
                  "(by the table; attribute restrictions are not checked)", markup=False)
        clean = clean and not report.problems
    return clean


@user_errors
def doctor(require: Optional[str] = typer.Option(None, "--require", help="Comma-separated backends that must be "
                                                 "usable (torch, torch-cuda, ort, ort-cuda, ort-trt, trt, trt-plugin); "
                                                 "exit status 1 otherwise.", show_default=False),
           model: Optional[Path] = typer.Option(None, "--model", help="An ONNX export to check, node by node, against "
                                                "onnx-tensorrt's supported-operator table (instead of the backends); "
                                                "exit status 1 if a node would not parse.", show_default=False),
           trt_version: Optional[int] = typer.Option(None, "--trt-version", help="TensorRT major version for "
                                                     "--model: 10 or 11 (default: both).", show_default=False)) -> None:
    """Which backends are usable here; for each that is not, the reason and the install or build command."""
    from instseg_deploy.export.trt.parsability import TRT_MAJORS

    if trt_version is not None and trt_version not in TRT_MAJORS:
        raise InstsegError(f"--trt-version: {trt_version} is not one of {', '.join(map(str, TRT_MAJORS))}")
    if model is None and trt_version is not None:
        raise InstsegError("--trt-version applies to --model; pass the ONNX file to check")
    if model is not None:
        if require:
            raise InstsegError("--require and --model are separate checks; run them one at a time")
        if not print_parsability(model, [trt_version] if trt_version else list(TRT_MAJORS)):
            raise typer.Exit(1)
        return
    env = probe_environment()
    rows = backend_statuses(env)
    by_key = {row.key: row for row in rows}
    wanted = [k.strip() for k in (require or "").split(",") if k.strip()]
    unknown = [k for k in wanted if k not in by_key]
    if unknown:
        raise InstsegError(f"--require: unknown backend(s) {', '.join(unknown)} (choose from {', '.join(by_key)})")
    table = Table(title="instseg backends on this machine")
    table.add_column("backend")
    table.add_column("usable")
    table.add_column("details / how to fix")
    for row in rows:
        text = escape(row.detail) + "".join(f"\nnote: {escape(n)}" for n in row.notes)
        text += f"\n[bold]fix:[/] {escape(row.fix)}" if row.fix else ""
        table.add_row(row.key, "[green]yes[/]" if row.usable else "[red]no[/]", text)
    Console(soft_wrap=False).print(table)
    if not env.nvidia_gpu:
        Console(soft_wrap=False).print("No NVIDIA GPU on this machine (no /dev/nvidia*, no nvidia-smi, no CUDA "
                                       "device): the GPU backends need one, so nothing is suggested for them; "
                                       "the CPU backends are what it can run.", highlight=False, markup=False)
    missing = [k for k in wanted if not by_key[k].usable]
    if missing:
        Console(stderr=True).print(f"[bold red]error:[/] not usable here: {', '.join(missing)}", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(doctor)
