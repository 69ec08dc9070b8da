"""Which precision an engine is built in: TensorRT builder flags from --fp16 / --int8 / --calib.

The flags are TensorRT 10's; on 11.x (strongly typed, ``TrtApi.strongly_typed``) the plan's precision
comes from the model instead: FP16 from an FP16-converted ONNX, INT8 from Q/DQ nodes only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.onnx_edit import QDQ_OPS
from instseg_deploy.runtime.trt.util import TrtApi


@dataclass(frozen=True)
class PrecisionPlan:
    precision: str  # "fp32", "fp16" or "int8" (int8 may fall back to fp16 where --fp16 is also given)
    flags: tuple[str, ...]  # trt.BuilderFlag member names
    int8_mode: str | None  # "explicit" (Q/DQ nodes in the model), "calibration" (--calib) or None


def is_qdq_model(proto, meta: dict[str, Any]) -> bool:
    """A model quantized with Q/DQ nodes (`instseg quantize` writes those, metadata precision "int8")."""
    return meta.get("precision") == "int8" or any(node.op_type in QDQ_OPS for node in proto.graph.node)


def resolve_precision(fp16: bool, int8: bool, calib: str | os.PathLike | None, qdq_model: bool) -> PrecisionPlan:
    """Builder flags from --fp16 / --int8 / --calib and whether the model is already quantized.

    A Q/DQ model is built with INT8 explicitly (its scales are in the graph; --int8 is implied);
    --int8 on a float model needs --calib DIR for TensorRT's implicit entropy calibration
    (deprecated since TensorRT 10.1, kept as a fallback). --fp16 with INT8 lets the layers that
    are not quantized run in FP16 instead of FP32.
    """
    extra = ("FP16",) if fp16 else ()
    if qdq_model:
        if calib is not None:
            raise InstsegError("the model is already quantized (Q/DQ nodes from `instseg quantize`); "
                               "--calib is only for float models")
        return PrecisionPlan("int8", ("INT8",) + extra, "explicit")
    if calib is not None and not int8:
        raise InstsegError("--calib is used with --int8 (INT8 calibration images)")
    if int8:
        if calib is None:
            raise InstsegError("--int8 needs a quantized model (`instseg quantize`, Q/DQ nodes) or --calib DIR "
                               "with calibration images for TensorRT's own calibration")
        return PrecisionPlan("int8", ("INT8",) + extra, "calibration")
    if fp16:
        return PrecisionPlan("fp16", ("FP16",), None)
    return PrecisionPlan("fp32", (), None)


def refuse_unbuildable(plan: PrecisionPlan, api: TrtApi, model: str, images: str, out: str) -> None:
    """Refuse what a strongly typed TensorRT (11.x) cannot build, naming the commands that can."""
    if not api.strongly_typed:
        return
    if plan.int8_mode == "calibration":
        raise InstsegError(f"TensorRT {api.version} has no implicit INT8 calibration (--int8 --calib); make a Q/DQ "
                           f"model and build that: instseg quantize --model {model} --calib --images {images} "
                           f"--out model.int8.onnx, then instseg export --to trt --model model.int8.onnx --out {out}")
    if plan.int8_mode == "explicit" and "FP16" in plan.flags:
        raise InstsegError(f"TensorRT {api.version} takes the precision from the model's types, so --fp16 cannot "
                           "apply to a Q/DQ model (its layers outside Q/DQ stay FP32); build it without --fp16")
