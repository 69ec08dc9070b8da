"""NumPy front end of the multi-level RoIAlign CPU twin (the CUDA kernel's math, run by g++ code).

Semantics are those of ``instseg_deploy.modeling.poolers.multilevel_roi_align``: each RoI picks its
FPN level by detectron2's rule, then is pooled by torchvision's ``roi_align`` on that level.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import numpy as np

from instseg_deploy.ops.native_build import twin_library_path

# Mirrors INSTSEG_DTYPE_* in plugins/src/roi_align_status.h.
_DTYPE_TAGS = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(twin_library_path()))
    fn = lib.instseg_multilevel_roi_align_cpu
    int_p = ctypes.POINTER(ctypes.c_int)
    fn.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_int64,  # dtype, rois, num_rois
        ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,  # features, num_levels
        ctypes.c_int, ctypes.c_int, int_p, int_p, int_p,  # batch, channels, heights, widths, strides
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,  # attributes
        ctypes.c_void_p,  # output
    ]
    fn.restype = ctypes.c_int
    lib.instseg_roi_align_status_message.argtypes = [ctypes.c_int]
    lib.instseg_roi_align_status_message.restype = ctypes.c_char_p
    return lib


def _int_array(values: Sequence[int]) -> ctypes.Array:
    return (ctypes.c_int * len(values))(*[int(v) for v in values])


def _check_inputs(rois: np.ndarray, features: Sequence[np.ndarray], featmap_strides: Sequence[int]) -> None:
    if rois.dtype not in _DTYPE_TAGS:
        raise TypeError(f"rois must be float32 or float16, got {rois.dtype}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must have shape (R, 5), got {rois.shape}")
    if len(features) != len(featmap_strides) or not features:
        raise ValueError(f"{len(features)} feature maps for {len(featmap_strides)} strides")
    n, c = features[0].shape[:2]
    for f in features:
        if f.dtype != rois.dtype:
            raise TypeError(f"feature dtype {f.dtype} differs from rois dtype {rois.dtype}")
        if f.ndim != 4 or f.shape[:2] != (n, c):
            raise ValueError(f"feature maps must be (N, C, H, W) with shared N, C; got {f.shape}")


def multilevel_roi_align(rois: np.ndarray, features: list[np.ndarray], featmap_strides: Sequence[int],
                         output_size: int, sampling_ratio: int = 0, aligned: bool = True,
                         canonical_box_size: int = 224, canonical_level: int = 4) -> np.ndarray:
    """Pool each RoI from the FPN level its size selects.

    rois: (R, 5) as (batch_index, x1, y1, x2, y2) in network-input pixels; features: P2..P5 as
    (N, C, H_l, W_l), same dtype as rois (float32 or float16). Returns (R, C, S, S) in that dtype.
    """
    rois = np.ascontiguousarray(rois)
    features = [np.ascontiguousarray(f) for f in features]
    _check_inputs(rois, features, featmap_strides)
    n, c = features[0].shape[:2]
    out = np.empty((rois.shape[0], c, output_size, output_size), dtype=rois.dtype)
    feature_ptrs = (ctypes.c_void_p * len(features))(*[f.ctypes.data for f in features])
    lib = _library()
    status = lib.instseg_multilevel_roi_align_cpu(
        _DTYPE_TAGS[rois.dtype], rois.ctypes.data, rois.shape[0], feature_ptrs, len(features), n, c,
        _int_array([f.shape[2] for f in features]), _int_array([f.shape[3] for f in features]),
        _int_array(featmap_strides), int(output_size), int(sampling_ratio), int(bool(aligned)),
        int(canonical_box_size), int(canonical_level), out.ctypes.data)
    if status != 0:
        raise ValueError(f"multilevel_roi_align: {lib.instseg_roi_align_status_message(status).decode()}")
    return out
