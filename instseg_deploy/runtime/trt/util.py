"""Small TensorRT helpers every TensorRT module needs: importing it, its logger, tensor types, devices."""

from __future__ import annotations

import glob
import logging
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass

from instseg_deploy.errors import InstsegError

TRT_INSTALL = "pip install \"tensorrt-cu12>=10,<12\" (TensorRT 10 or 11 for CUDA 12; tensorrt-cu13 for CUDA 13)"
SUPPORTED_MAJORS = (10, 11)  # the majors whose Python API this package follows (keep TRT_INSTALL in step)

log = logging.getLogger("instseg_deploy.tensorrt")


class TensorRTUnavailable(InstsegError):
    """TensorRT or a CUDA GPU is missing on this machine."""


class UnsupportedTensorRT(TensorRTUnavailable):
    """An installed TensorRT whose major version this package does not follow."""


def version_triple(version: str) -> tuple[int, ...]:
    """'10.3.0.26' or '10.3.0.post1' -> (10, 3, 0): engines are tied to major.minor.patch."""
    return tuple(int(v) for v in re.findall(r"\d+", version)[:3])


@dataclass(frozen=True)
class TrtApi:
    """The code path for the installed TensorRT; its major version decides it here and nowhere else.

    10.x: weakly typed networks, precision from ``BuilderFlag.FP16/INT8`` and implicit INT8 calibration
    (``int8_calibrator``). 11.x removed every weak-typing API (NVIDIA's 10.x -> 11.x migration guide):
    networks are always strongly typed (``create_network(0)``; ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
    is only kept as an ignored, deprecated flag), so FP16 must be in the ONNX's tensor types and INT8 comes
    only from Q/DQ nodes.
    """

    version: str
    major: int

    @property
    def strongly_typed(self) -> bool:
        return self.major >= 11


def tensorrt_api(version: str) -> TrtApi:
    """:class:`TrtApi` of a ``trt.__version__``; UnsupportedTensorRT outside :data:`SUPPORTED_MAJORS`."""
    numbers = version_triple(version)
    major = numbers[0] if numbers else -1
    if major not in SUPPORTED_MAJORS:
        raise UnsupportedTensorRT(f"TensorRT {version} is not supported: instseg-deploy follows the TensorRT "
                                  f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)} Python API; {TRT_INSTALL}")
    return TrtApi(version, major)


def nvidia_gpu_found() -> bool:
    """Whether this machine has an NVIDIA GPU: a /dev/nvidia* device, nvidia-smi, or a CUDA device torch sees
    (the first two also find a GPU that a CPU-only torch build cannot use)."""
    if glob.glob("/dev/nvidia*") or shutil.which("nvidia-smi"):
        return True
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def tensorrt_missing(detail: str = "", gpu_found: bool = True) -> str:
    """The one message for a machine without TensorRT; ``detail``: why an installed one does not import."""
    where = "" if gpu_found else ", and this machine has no NVIDIA GPU"
    return (f"TensorRT is not installed{detail}{where}: TensorRT needs an NVIDIA GPU with CUDA and the TensorRT "
            f"Python package, {TRT_INSTALL}")


def import_tensorrt(gpu_found: Callable[[], bool] = nvidia_gpu_found):
    """The ``tensorrt`` module, or TensorRTUnavailable with :func:`tensorrt_missing`'s line (`bench --backend
    trt` and `export --to trt` call it right after their argument checks, before reading any model); an
    unsupported version is refused here too, so that every entry point says so first."""
    try:
        import tensorrt
    except ImportError as e:
        detail = "" if e.name == "tensorrt" else f" ({e})"  # installed but broken, e.g. missing libnvinfer
        raise TensorRTUnavailable(tensorrt_missing(detail, gpu_found())) from None
    tensorrt_api(tensorrt.__version__)
    return tensorrt


def make_logger(trt):
    """A TensorRT logger: warnings and errors go to ``logging`` (instseg_deploy.tensorrt), and
    errors are also kept so that our messages can quote TensorRT's last one."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.lock = threading.Lock()  # TensorRT logs from its builder threads

        def log(self, severity, msg):
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= int(trt.ILogger.Severity.ERROR):
                with self.lock:
                    self.errors.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif level <= int(trt.ILogger.Severity.WARNING):
                log.warning("TensorRT: %s", msg)

    return CollectingLogger()


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
                 "INT8": "int8", "UINT8": "uint8", "BF16": "bfloat16"}


def torch_dtype(trt_dtype):
    """torch dtype of a ``trt.DataType`` (by member name: FLOAT, HALF, INT32, INT64, BOOL, ...)."""
    import torch

    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in _TORCH_DTYPES:
        raise InstsegError(f"TensorRT tensor type {name} has no torch equivalent here")
    return getattr(torch, _TORCH_DTYPES[name])


def device_index(device: str) -> int:
    """'cuda', 'cuda:1' (or the CLI's default 'cpu', meaning the first GPU) -> CUDA device index."""
    if device in ("cpu", "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise InstsegError(f"--device {device!r} is not a CUDA device for --backend trt (use cuda or cuda:N)")
