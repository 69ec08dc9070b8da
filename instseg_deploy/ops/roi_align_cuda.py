"""torch front end of the multi-level RoIAlign CUDA kernel (the TensorRT plugin's kernel, without TensorRT).

Runs ``ops/csrc/multilevel_roi_align_kernel.cu`` through its C ABI on torch CUDA tensors, on
torch's current stream, so tests and benchmarks can check the plugin's math against torchvision
on a GPU. The library is compiled with nvcc for the tensors' GPU on first use (see native_build).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import torch

from instseg_deploy.ops.native_build import cuda_library_path
from instseg_deploy.ops.roi_align_args import C_ARGTYPES, check_inputs, int_array

# Mirrors INSTSEG_DTYPE_* in ops/csrc/roi_align_status.h.
_DTYPE_TAGS = {torch.float32: 0, torch.float16: 1}


@functools.cache
def _kernel(arch: str):
    fn = ctypes.CDLL(str(cuda_library_path(arch))).instseg_multilevel_roi_align_cuda
    fn.argtypes = [*C_ARGTYPES, ctypes.c_void_p]  # + cudaStream_t
    fn.restype = ctypes.c_int
    return fn


def _check_devices(rois: torch.Tensor, features: Sequence[torch.Tensor]) -> None:
    for t in (rois, *features):
        if t.device != rois.device or t.device.type != "cuda":
            raise ValueError(f"rois and feature maps must be on one CUDA device, got {t.device} and {rois.device}")


def multilevel_roi_align_cuda(rois: torch.Tensor, features: Sequence[torch.Tensor], featmap_strides: Sequence[int],
                              output_size: int, sampling_ratio: int = 0, aligned: bool = True,
                              canonical_box_size: int = 224, canonical_level: int = 4,
                              out: torch.Tensor | None = None) -> torch.Tensor:
    """Pool each RoI from the FPN level its size selects, with the CUDA kernel.

    rois: (R, 5) as (batch_index, x1, y1, x2, y2) in network-input pixels; features: P2..P5 as
    (N, C, H_l, W_l); all on one CUDA device, float32 or float16 alike. Returns (R, C, S, S) in that
    dtype (written into ``out`` when given), queued on torch's current stream.
    """
    check_inputs(rois, features, featmap_strides, _DTYPE_TAGS)
    _check_devices(rois, features)
    rois = rois.contiguous()
    features = [f.contiguous() for f in features]
    n, c = features[0].shape[:2]
    shape = (rois.shape[0], c, output_size, output_size)
    if out is None:
        out = rois.new_empty(shape)
    elif tuple(out.shape) != shape or out.dtype != rois.dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {rois.dtype} tensor of shape {shape}")
    major, minor = torch.cuda.get_device_capability(rois.device)
    feature_ptrs = (ctypes.c_void_p * len(features))(*[f.data_ptr() for f in features])
    with torch.cuda.device(rois.device):
        status = _kernel(f"sm_{major}{minor}")(
            _DTYPE_TAGS[rois.dtype], rois.data_ptr(), rois.shape[0], feature_ptrs, len(features), n, c,
            int_array([f.shape[2] for f in features]), int_array([f.shape[3] for f in features]),
            int_array(featmap_strides), int(output_size), int(sampling_ratio), int(bool(aligned)),
            int(canonical_box_size), int(canonical_level), out.data_ptr(), torch.cuda.current_stream().cuda_stream)
    if status != 0:
        raise ValueError(f"multilevel_roi_align_cuda: {_status_message(status)}")
    return out


def _status_message(status: int) -> str:
    # The message table lives in the CPU twin's library (the CUDA library exports only the kernel).
    from instseg_deploy.ops.roi_align_twin import status_message

    return status_message(status)
