"""What the benchmark needs to know about the models it times: a row's precision label, the compute type
its "% of peak" is set against, and the torch model whose FLOPs stand for every backend."""

from __future__ import annotations

from pathlib import Path

from instseg_deploy.bench.seeded import initial_model
from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.reader import read_model_file
from instseg_deploy.modeling import MaskRCNN


def precision_label(model: Path) -> str:
    """fp32, fp16 or int8, as the exported model's metadata records it (fp32 for a foreign model)."""
    return read_model_file(model).precision


# A row label's last word (its precision, e.g. "ort int8", "openvino bf16") -> the compute type whose peak the
# row is measured against. fp16 counts as f32: ONNX Runtime's x86 CPU provider has almost no fp16 kernels,
# so an fp16 model's convolutions run in float32 between Cast nodes (and so against the f32 limit).
PEAK_COMPUTE = {"fp32": "f32", "f32": "f32", "float32": "f32", "fp16": "f32", "f16": "f32",
                "bf16": "bf16", "int8": "int8", "uint8": "int8", "i8": "int8", "u8": "int8"}


def peak_compute(label: str) -> str:
    """f32, bf16 or int8: the peak a row labelled ``label`` ("torch fp32", "ort int8", "openvino bf16") is
    compared with. A label without a known precision (e.g. "trt") counts as f32."""
    words = label.lower().split()
    return PEAK_COMPUTE.get(words[-1], "f32") if words else "f32"


def flops_model(config: Path | None, weights: Path | None, models: list[Path]) -> MaskRCNN:
    """The torch model whose conv/matmul FLOPs stand for every backend (same graph): from
    ``config``/``weights``, else the architecture recorded in the first exported model (.onnx or .engine),
    with seeded initial weights (bench.seeded.standardize_batch_norms gives its ROI heads a trained model's work)."""
    if weights is not None:
        from instseg_deploy.runtime.torch_model import load_model

        return load_model(config, weights)[0]
    from instseg_deploy.config.loader import config_from_tree, tree_from_text

    meta = read_model_file(models[0]).metadata
    if meta is None or "config" not in meta:
        raise InstsegError("FLOPs need the model's architecture: pass --config/--weights or an instseg-exported model")
    # seeded: the same initial weights, so the same count, in every run
    return initial_model(config_from_tree(tree_from_text(meta["config"], str(models[0]))).model)
