"""TensorRT's own (implicit) INT8 calibration: the calibration shape, batches and the calibrator.

Deprecated since TensorRT 10.1 in favour of Q/DQ models (`instseg quantize`) and removed in 11.x; kept
as a fallback for float models (``--int8 --calib DIR``) on 10.x.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from instseg_deploy.data.calibration import ImageCalibrationReader
from instseg_deploy.export.trt.progress import BuildProgress
from instseg_deploy.model_file.metadata import preprocess_params
from instseg_deploy.runtime.trt.profiles import ShapeRange

DEFAULT_CALIB_IMAGES = 256
CALIBRATION_PHASE = "INT8 calibration images"


def calibration_range(image_range: ShapeRange) -> ShapeRange:
    """The fixed shape TensorRT calibrates at: the smallest batch and the largest size, so that
    every calibration image fits after resizing (TensorRT calibrates one shape only)."""
    shape = (image_range.min[0], 3, image_range.max[2], image_range.max[3])
    return ShapeRange(shape, shape, shape)


def calibration_batches(paths: list[Path], meta: dict[str, Any], input_names: list[str], calib: ShapeRange,
                        sink: BuildProgress | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for TensorRT's calibrator: each image through the shared preprocessing, padded to the
    calibration shape (N copies of it when the profile's smallest batch is N > 1)."""
    phase = CALIBRATION_PHASE

    def on_image(done: int, total: int) -> None:
        if sink is not None:
            sink.step(phase, done - 1)

    reader = ImageCalibrationReader(paths, preprocess_params(meta), input_names, pad_to=calib.max[2:],
                                    fixed_batch=calib.max[0], on_image=on_image)
    if sink is not None:
        sink.phase_start(phase, None, len(paths))
    yield from reader
    if sink is not None:
        sink.phase_finish(phase)


def make_entropy_calibrator(trt, batches: Iterator[dict[str, np.ndarray]], input_dtypes: dict[str, Any],
                            batch_size: int, device_index: int = 0):
    """trt.IInt8EntropyCalibrator2 fed from ``batches`` through torch CUDA tensors.

    TensorRT calls ``get_batch(names)`` until it returns None; the returned device pointers must
    stay valid until the next call, so the tensors are kept on the calibrator. Exceptions inside
    the callbacks are swallowed by TensorRT's bindings, so the first one is kept and re-raised
    after the build. No calibration cache is written: a cache silently reused for another model
    or image set would be wrong, and calibrating a few hundred images is cheap next to the build.
    """
    import torch

    device = torch.device("cuda", device_index)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: BaseException | None = None
            self.current: dict[str, torch.Tensor] = {}

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            try:
                feeds = next(batches, None)
                if feeds is None:
                    return None
                self.current = {name: torch.from_numpy(np.ascontiguousarray(feeds[name])).to(
                    device, dtype=input_dtypes[name]) for name in names}
                torch.cuda.synchronize(device)
                return [int(self.current[name].data_ptr()) for name in names]
            except BaseException as e:  # noqa: BLE001 -- re-raised after the build
                self.error = self.error or e
                return None

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            return None

    return EntropyCalibrator()
