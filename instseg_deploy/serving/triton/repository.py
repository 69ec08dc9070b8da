"""Writing a Triton model repository for an exported model (`instseg export --to triton`).

``python`` flavour: one Python-backend model ``NAME`` running the whole predictor (network
included) on the exported file in its version folder: what the server bundled in PyPI's
nvidia-pytriton can run. ``native`` flavour: the network as the Triton-native model
``NAME_net`` (onnxruntime_onnx, tensorrt_plan or openvino) and the Python-backend model ``NAME``
doing pre/post-processing and batching around it through BLS: what production Triton (NGC
container) runs on a GPU. Both take and return the same tensors (runtime.triton.contract).

Layout::

    REPO/README.md
    REPO/NAME/config.pbtxt            Python backend; parameters: backend, model_file, metadata, threads,
                                      precision (openvino)
    REPO/NAME/1/model.py              imports serving.triton.python_model (instseg-deploy installed)
    REPO/NAME/1/model.onnx            python flavour: the exported file (.xml+.bin, .engine+sidecar)
    REPO/NAME_net/config.pbtxt        native flavour
    REPO/NAME_net/1/model.onnx|model.plan|model.xml+model.bin
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from instseg_deploy.errors import ServingError
from instseg_deploy.model_file.reader import ModelFile, read_model_file
from instseg_deploy.model_file.sidecar import sidecar_path
from instseg_deploy.runtime.openvino import PRECISIONS as OPENVINO_PRECISIONS
from instseg_deploy.runtime.triton.contract import MAX_IMAGE_BYTES, METADATA_PARAMETER
from instseg_deploy.serving.triton.model_config import (
    KINDS,
    MODEL_NAME,
    NET_FORMATS,
    NET_MODEL_PARAMETER,
    net_model_config,
    net_model_name,
    plugin_note,
    python_model_config,
)
from instseg_deploy.serving.triton.openvino_net import write_served_ir

FLAVOURS = ("python", "native")
MARKER = ".instseg-triton-repository"  # marks a folder we wrote, so a re-export may replace it
MODEL_PY = '''"""Triton Python-backend entry point of an instseg-deploy model (pip install instseg-deploy)."""

from instseg_deploy.serving.triton.python_model import TritonPythonModel  # noqa: F401
'''
_BACKEND_OF_FORMAT = {"onnx": "ort", "openvino": "openvino", "engine": "trt"}


@dataclass(frozen=True)
class RepositoryRequest:
    model: Path  # an exported .onnx, OpenVINO IR .xml or TensorRT engine
    out: Path
    name: str = "instseg"
    flavour: str = "python"
    max_batch: int = 4
    instances: int = 1
    max_queue_delay_us: int = 2000
    backend: str | None = None  # python flavour: runtime of the network (default from the file: ort/openvino/trt)
    threads: int = 0
    precision: str = "auto"  # python flavour, openvino: f32 | bf16 | auto, as --backend openvino takes it
    kind: str | None = None  # KIND_CPU / KIND_GPU; default: GPU for TensorRT, else CPU
    max_image_bytes: int = MAX_IMAGE_BYTES  # larger encoded images are refused before decoding


def check_request(request: RepositoryRequest) -> None:
    if request.flavour not in FLAVOURS:
        raise ServingError(f"--flavour must be one of {', '.join(FLAVOURS)}, got {request.flavour!r}")
    if not MODEL_NAME.match(request.name):
        raise ServingError(f"model name {request.name!r}: letters, digits, '_', '-', '.' (64 at most)")
    for value, option in ((request.max_batch, "--max-batch"), (request.instances, "--instances")):
        if value < 1:
            raise ServingError(f"{option} must be at least 1, got {value}")
    if request.max_image_bytes < 1:
        raise ServingError(f"the image size limit must be at least 1 byte, got {request.max_image_bytes}")
    if request.max_queue_delay_us < 0:
        raise ServingError(f"--max-queue-delay-us must be >= 0, got {request.max_queue_delay_us}")
    if request.kind not in (None, *KINDS):
        raise ServingError(f"instance kind must be one of {', '.join(KINDS)}, got {request.kind!r}")
    if request.precision not in OPENVINO_PRECISIONS:
        raise ServingError(f"--precision must be one of {', '.join(OPENVINO_PRECISIONS)}, got {request.precision!r}")


def _check_precision(request: RepositoryRequest, backend: str) -> None:
    """--precision chooses OpenVINO's inference precision in the python flavour; nowhere else can it be
    honoured (Triton's OpenVINO backend runs the CPU plugin's default, see serving.triton.openvino_net)."""
    if request.precision == "auto":
        return
    if backend != "openvino":
        raise ServingError(f"--precision {request.precision} is for the openvino backend; {backend} runs the "
                           "file's own precision")
    if request.flavour != "python":
        raise ServingError(f"--precision {request.precision} needs the python flavour: Triton's OpenVINO backend "
                           "runs the CPU plugin's default precision (bf16 on BF16 CPUs)")


def _copy_model(model: ModelFile, folder: Path) -> str:
    """Copy the exported file (and its companion) into ``folder`` under Triton's default name for its
    format (model.onnx, model.xml + model.bin, model.plan + its sidecar); the new name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / NET_FORMATS[model.format].files[0]
    shutil.copyfile(model.path, target)
    if model.format == "openvino":
        shutil.copyfile(model.path.with_suffix(".bin"), target.with_suffix(".bin"))
    if model.format == "engine":
        shutil.copyfile(sidecar_path(model.path), sidecar_path(target))
    return target.name


def _readme(request: RepositoryRequest, model: ModelFile, note: str | None) -> str:
    lines = [f"# Triton model repository: {request.name} ({request.flavour} flavour)", "",
             f"Made by `instseg export --to triton` from `{model.path.name}`. Requests carry IMAGE_BYTES (an encoded "
             "image) or IMAGE (1xHxWx3 uint8 BGR); responses hold BOXES, SCORES, CLASSES, IMAGE_SIZE, MASKS_RLE and "
             "CLASS_NAMES (see instseg_deploy/runtime/triton/contract.py).", "",
             "The Python-backend model imports instseg-deploy: install it in the server's Python "
             "(`pip install instseg-deploy`).", "",
             "Run it: `tritonserver --model-repository=.` (NGC container: `docker run --rm --gpus all -p8000:8000 "
             "-p8001:8001 -p8002:8002 -v $PWD:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 "
             "tritonserver --model-repository=/models`), or `instseg serve --model <the exported file>` locally."]
    if note:
        lines += ["", note]
    if request.flavour == "native" and NET_FORMATS[model.format].notes:
        lines += ["", "## Precision", "", " ".join(NET_FORMATS[model.format].notes)]
    return "\n".join(lines) + "\n"


def write_repository(request: RepositoryRequest) -> Path:
    """Write the repository for ``request`` (replacing one we wrote before at ``out``); its path."""
    check_request(request)
    model = read_model_file(request.model)
    meta = model.require_metadata("export it with `instseg export` first")
    backend = request.backend or _BACKEND_OF_FORMAT[model.format]
    _check_precision(request, backend)
    out = Path(request.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ServingError(f"{out} exists and is not a repository written by instseg; remove it or choose another "
                           "--out")
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        version = staging / request.name / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text(MODEL_PY, encoding="utf-8")
        parameters = {METADATA_PARAMETER: json.dumps(meta, separators=(",", ":")),
                      "max_image_bytes": str(request.max_image_bytes)}
        if request.flavour == "python":
            parameters.update(backend=backend, model_file=_copy_model(model, version),
                              threads=str(request.threads))
            if backend == "openvino":
                parameters["precision"] = request.precision
        else:
            net = net_model_name(request.name)
            parameters[NET_MODEL_PARAMETER] = net
            if model.format == "openvino":
                write_served_ir(model, staging / net / "1")  # with what its implicit bf16 needs
            else:
                _copy_model(model, staging / net / "1")
            (staging / net / "config.pbtxt").write_text(net_model_config(net, model, request.instances,
                                                                         kind=request.kind), encoding="utf-8")
        # The Python model runs TensorRT itself in the python flavour; pre/post-processing is CPU work.
        kind = request.kind or ("KIND_GPU" if request.flavour == "python" and backend == "trt" else "KIND_CPU")
        (staging / request.name / "config.pbtxt").write_text(
            python_model_config(request.name, request.max_batch, request.instances, request.max_queue_delay_us,
                                parameters, kind=kind), encoding="utf-8")
        note = plugin_note(model) if request.flavour == "native" else None
        (staging / "README.md").write_text(_readme(request, model, note), encoding="utf-8")
        (staging / MARKER).write_text(json.dumps({"flavour": request.flavour, "name": request.name}) + "\n")
        _replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an old ``out`` is moved aside first and removed after (never half of each)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
