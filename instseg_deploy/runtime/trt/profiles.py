"""Optimisation profiles: the (min, opt, max) shape of every engine input, from CLI flags and metadata.

Used by the engine builder (``export.trt``), the engine runner (to fit batches into the profile)
and ONNX Runtime's TensorRT execution provider (one explicit profile), so it lives with the
runtime and needs no TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.processing.graph_io import IMAGE_SIZES, IMAGES, ORIGINAL_SIZES
from instseg_deploy.processing.sizes import parse_dims, parse_hw
from instseg_deploy.runtime.runner import fixed_input_shape

DEFAULT_MAX_BATCH = 8
IMAGE_INPUT = IMAGES  # (N, 3, H, W) float32
SIZE_INPUTS = (IMAGE_SIZES, ORIGINAL_SIZES)  # (N, 2) int64, one row per image


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max shape of one input in an optimisation profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @staticmethod
    def from_json(data: dict[str, list[int]]) -> ShapeRange:
        return ShapeRange(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


def _triple(text: str, what: str, parse_one) -> tuple[Any, Any, Any]:
    """'A' (fixed) or 'MIN:OPT:MAX'."""
    parts = text.split(":")
    if len(parts) == 1:
        value = parse_one(parts[0])
        return value, value, value
    if len(parts) == 3:
        return tuple(parse_one(p) for p in parts)  # type: ignore[return-value]
    raise InstsegError(f"{what} must be one value or MIN:OPT:MAX, got {text!r}")


def _batch_value(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InstsegError(f"--batch values must be positive integers, got {text!r}")
    return int(text)


def _size_value(text: str) -> tuple[int, int]:
    return parse_hw(text, "--size")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple if multiple > 1 else value


def default_size_range(meta: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(min, opt, max) padded input sizes that cover every image the preprocessing can produce.

    Resizing gives a short side of at most MIN_SIZE_TEST and a long side of at most
    MAX_SIZE_TEST (a very elongated image can have a much shorter short side), padded to the
    size divisibility; opt is a 4:3 landscape image, the most common photo shape.
    """
    p = meta["preprocess"]
    d = max(int(p["size_divisibility"]), 1)
    step = d if d > 1 else 32
    short, long = int(p["min_size"]), int(p["max_size"])
    opt = (_round_up(min(short, long), step), _round_up(min(long, int(short * 4 / 3 + 0.5)), step))
    largest = _round_up(long, step)
    return (step, step), opt, (largest, largest)


def resolve_image_range(meta: dict[str, Any], batch: str = "dynamic", size: str = "dynamic",
                        min_shape: str | None = None, opt_shape: str | None = None,
                        max_shape: str | None = None) -> ShapeRange:
    """The (N, 3, H, W) range of the ``images`` input from the CLI flags and the model's metadata.

    Either ``--min-shape/--opt-shape/--max-shape`` (all three, NxCxHxW) or ``--batch`` and
    ``--size``, each 'dynamic' (defaults below), one value (fixed) or MIN:OPT:MAX. Defaults: a
    model exported with a fixed batch or size keeps it; otherwise batch 1:1:8 and the sizes of
    :func:`default_size_range`. H and W must be multiples of the size divisibility, since the
    shared preprocessing always pads to one.
    """
    explicit = (min_shape, opt_shape, max_shape)
    if any(s is not None for s in explicit):
        if any(s is None for s in explicit):
            raise InstsegError("--min-shape, --opt-shape and --max-shape go together (all three, NxCxHxW)")
        if batch != "dynamic" or size != "dynamic":
            raise InstsegError("give either --min-shape/--opt-shape/--max-shape or --batch/--size, not both")
        shapes = [parse_dims(s, flag) for s, flag in zip(explicit, ("--min-shape", "--opt-shape", "--max-shape"))]
        for shape, flag in zip(shapes, ("--min-shape", "--opt-shape", "--max-shape")):
            if len(shape) != 4 or shape[1] != 3:
                raise InstsegError(f"{flag} must be Nx3xHxW (the images input), got {'x'.join(map(str, shape))}")
        image_range = ShapeRange(*shapes)
    else:
        model_batch, model_size = fixed_input_shape(meta)
        if batch != "dynamic":
            batches = _triple(batch, "--batch", _batch_value)
        elif model_batch is not None:
            batches = (model_batch,) * 3
        else:
            batches = (1, 1, DEFAULT_MAX_BATCH)
        if size != "dynamic":
            sizes = _triple(size, "--size", _size_value)
        elif model_size is not None:
            sizes = (model_size,) * 3
        else:
            sizes = default_size_range(meta)
        image_range = ShapeRange(*((n, 3, *hw) for n, hw in zip(batches, sizes)))
    _check_image_range(image_range, meta)
    return image_range


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _check_image_range(r: ShapeRange, meta: dict[str, Any]) -> None:
    if not all(lo <= mid <= hi for lo, mid, hi in zip(r.min, r.opt, r.max)):
        raise InstsegError(f"the shapes must satisfy min <= opt <= max in every dimension, got "
                           f"{_fmt(r.min)} / {_fmt(r.opt)} / {_fmt(r.max)}")
    d = int(meta["preprocess"]["size_divisibility"])
    if d > 1:
        for shape, name in ((r.min, "min"), (r.opt, "opt"), (r.max, "max")):
            if shape[2] % d or shape[3] % d:
                raise InstsegError(f"the {name} size {shape[2]}x{shape[3]} must be a multiple of {d} (the model "
                                   f"pads every input to one), e.g. {_round_up(shape[2], d)}x{_round_up(shape[3], d)}")
    model_batch, model_size = fixed_input_shape(meta)
    if model_batch is not None and {r.min[0], r.opt[0], r.max[0]} != {model_batch}:
        raise InstsegError(f"the ONNX model has a fixed batch of {model_batch}; the profile must use it "
                           "(re-export with --batch dynamic for a range)")
    if model_size is not None and {r.min[2:], r.opt[2:], r.max[2:]} != {model_size}:
        raise InstsegError(f"the ONNX model has a fixed input size {model_size[0]}x{model_size[1]}; the profile must "
                           "use it (re-export with --size dynamic for a range)")


def input_profiles(image_range: ShapeRange, input_names: list[str]) -> dict[str, ShapeRange]:
    """Per-input ranges: ``images`` (N, 3, H, W) and the (N, 2) size inputs the graph has."""
    unknown = [n for n in input_names if n != IMAGE_INPUT and n not in SIZE_INPUTS]
    if IMAGE_INPUT not in input_names or unknown:
        raise InstsegError(f"the ONNX model's inputs {input_names} are not an instseg export's "
                           f"({IMAGE_INPUT}, {', '.join(SIZE_INPUTS)})")
    profiles = {IMAGE_INPUT: image_range}
    for name in SIZE_INPUTS:
        if name in input_names:
            profiles[name] = ShapeRange((image_range.min[0], 2), (image_range.opt[0], 2), (image_range.max[0], 2))
    return profiles


def profiles_json(profiles: dict[str, ShapeRange]) -> dict[str, dict[str, list[int]]]:
    return {name: r.as_json() for name, r in profiles.items()}
