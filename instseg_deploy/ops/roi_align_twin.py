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
from instseg_deploy.ops.roi_align_args import C_ARGTYPES, check_inputs, int_array

# Mirrors INSTSEG_DTYPE_* in ops/csrc/roi_align_status.h.
_DTYPE_TAGS = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(twin_library_path()))
    fn = lib.instseg_multilevel_roi_align_cpu
    fn.argtypes = list(C_ARGTYPES)
    fn.restype = ctypes.c_int
    lib.instseg_roi_align_status_message.argtypes = [ctypes.c_int]
    lib.instseg_roi_align_status_message.restype = ctypes.c_char_p
    return lib


def multilevel_roi_align(rois: np.ndarray, features: list[np.ndarray], featmap_strides: Sequence[int],
                         output_size: int, sampling_ratio: int = 0, aligned: bool = True,
                         canonical_box_size: int = 224, canonical_level: int = 4) -> np.ndarray:
    """Pool each RoI from the FPN level its size selects.

    rois: (R, 5) as (batch_index, x1, y1, x2, y2) in network-input pixels; features: P2..P5 as
    (N, C, H_l, W_l), same dtype as rois (float32 or float16). Returns (R, C, S, S) in that dtype.
    """
    rois = np.ascontiguousarray(rois)
    features = [np.ascontiguousarray(f) for f in features]
    check_inputs(rois, features, featmap_strides, _DTYPE_TAGS)
    n, c = features[0].shape[:2]
    out = np.empty((rois.shape[0], c, output_size, output_size), dtype=rois.dtype)
    feature_ptrs = (ctypes.c_void_p * len(features))(*[f.ctypes.data for f in features])
    lib = _library()
    status = lib.instseg_multilevel_roi_align_cpu(
        _DTYPE_TAGS[rois.dtype], rois.ctypes.data, rois.shape[0], feature_ptrs, len(features), n, c,
        int_array([f.shape[2] for f in features]), int_array([f.shape[3] for f in features]),
        int_array(featmap_strides), int(output_size), int(sampling_ratio), int(bool(aligned)),
        int(canonical_box_size), int(canonical_level), out.ctypes.data)
    if status != 0:
        raise ValueError(f"multilevel_roi_align: {status_message(status)}")
    return out


def status_message(status: int) -> str:
    """The text of a status code returned by the op's C functions (CPU twin or CUDA kernel)."""
    return _library().instseg_roi_align_status_message(status).decode()
