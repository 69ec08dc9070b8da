"""Argument checks and ctypes helpers shared by the RoIAlign front ends (NumPy twin, torch CUDA kernel)."""

from __future__ import annotations

import ctypes
from collections.abc import Collection, Sequence

_INT_P = ctypes.POINTER(ctypes.c_int)
# Arguments of instseg_multilevel_roi_align_cpu; the CUDA entry point takes a cudaStream_t after them.
C_ARGTYPES = (
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int64,  # dtype, rois, num_rois
    ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,  # features, num_levels
    ctypes.c_int, ctypes.c_int, _INT_P, _INT_P, _INT_P,  # batch, channels, heights, widths, strides
    ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,  # attributes
    ctypes.c_void_p,  # output
)


def int_array(values: Sequence[int]) -> ctypes.Array:
    return (ctypes.c_int * len(values))(*[int(v) for v in values])


def check_inputs(rois, features: Sequence, featmap_strides: Sequence[int], dtypes: Collection) -> None:
    """Shapes and dtypes of NumPy arrays or torch tensors alike: rois (R, 5), one (N, C, H, W) map per
    stride, all of one dtype from ``dtypes``."""
    if rois.dtype not in dtypes:
        raise TypeError(f"rois must be float32 or float16, got {rois.dtype}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must have shape (R, 5), got {tuple(rois.shape)}")
    if len(features) != len(featmap_strides) or not features:
        raise ValueError(f"{len(features)} feature maps for {len(featmap_strides)} strides")
    n, c = features[0].shape[:2]
    for f in features:
        if f.dtype != rois.dtype:
            raise TypeError(f"feature dtype {f.dtype} differs from rois dtype {rois.dtype}")
        if f.ndim != 4 or tuple(f.shape[:2]) != (n, c):
            raise ValueError(f"feature maps must be (N, C, H, W) with shared N, C; got {tuple(f.shape)}")
