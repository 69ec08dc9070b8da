"""runtime.pipeline: overlapped predict keeps input order, names the input that failed, and stops
its threads when the model fails or the consumer leaves."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from instseg_deploy.errors import ImageError
from instseg_deploy.processing.preprocess import PreprocessParams
from instseg_deploy.runtime.pipeline import predict_stream
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.runtime.runner import RawDetections

PARAMS = PreprocessParams("BGR", 32, 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1)


class _BrightnessRunner:
    """One detection per image whose score encodes the image's brightness (so a result can be traced
    back to its input); sleeps a varying time to shuffle the stages' timing."""

    name, max_batch, pad_to = "fake", None, None

    def __init__(self, fail_on_call: int | None = None):
        self.calls, self.fail_on_call = 0, fail_on_call

    def run(self, batch):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("model exploded")
        time.sleep(0.002 * (self.calls % 3))
        n = len(batch.image_sizes)
        scores = np.array([batch.images[i, 0, 0, 0] / 255 for i in range(n)], np.float32)
        boxes = np.tile(np.array([[1, 1, 8, 8]], np.float32), (n, 1))
        return RawDetections(boxes, scores, np.zeros(n, np.int64), np.arange(n, dtype=np.int64),
                             np.ones((n, 28, 28), np.float32))


def _image(value: int) -> np.ndarray:
    return np.full((20 + value % 7, 30, 3), value, np.uint8)


def _read(value):
    if value == "bad":
        raise ImageError("bad: not an image")
    time.sleep(0.001 * (value % 4))
    return _image(value)


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("overlap", [True, False])
def test_results_keep_input_order_and_errors_name_their_input(overlap, batch_size):
    predictor = Predictor(_BrightnessRunner(), PARAMS, ("thing",), mask_format="rle")
    items = [10, 20, "bad", 30, 40, 50, "bad", 60]
    out = list(predict_stream(predictor, items, _read, batch_size=batch_size, overlap=overlap))
    assert [p.item for p in out] == items
    for p in out:
        if p.item == "bad":
            assert isinstance(p.error, ImageError) and p.instances is None
        else:
            assert p.error is None
            assert p.instances.scores[0] == pytest.approx(p.item / 255)
            assert p.instances.mask_format == "rle" and len(p.instances.masks) == 1


def test_overlapped_and_sequential_give_the_same_instances():
    predictor = Predictor(_BrightnessRunner(), PARAMS, ("thing",), mask_format="dense")
    items = list(range(0, 250, 25))
    a = list(predict_stream(predictor, items, _read, overlap=True))
    b = list(predict_stream(predictor, items, _read, overlap=False))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.instances.boxes, y.instances.boxes)
        np.testing.assert_array_equal(x.instances.masks, y.instances.masks)


def test_a_preprocessing_failure_in_a_batch_is_pinned_on_its_input():
    """A fixed-size model: the oversized image fails preprocessing; its batch mates still run."""
    runner = _BrightnessRunner()
    runner.pad_to = (40, 64)
    predictor = Predictor(runner, PreprocessParams("BGR", 32, 200, (0.0,) * 3, (1.0,) * 3, 1), ("thing",))

    def read(value):
        return np.full((20, 30, 3), value, np.uint8) if value != 99 else np.full((20, 190, 3), 9, np.uint8)

    out = list(predict_stream(predictor, [10, 99, 30], read, batch_size=3))
    assert [p.item for p in out] == [10, 99, 30]
    assert out[1].error is not None and "fixed input size" in str(out[1].error)
    assert out[0].instances.scores[0] == pytest.approx(10 / 255)
    assert out[2].instances.scores[0] == pytest.approx(30 / 255)


def test_a_model_error_is_raised_and_no_thread_is_left_behind():
    before = threading.active_count()
    predictor = Predictor(_BrightnessRunner(fail_on_call=3), PARAMS, ("thing",))
    seen = []
    with pytest.raises(RuntimeError, match="model exploded"):
        for p in predict_stream(predictor, list(range(0, 200, 10)), _read):
            seen.append(p.item)
    assert seen == [0, 10]
    assert threading.active_count() == before


def test_leaving_early_stops_the_threads():
    before = threading.active_count()
    predictor = Predictor(_BrightnessRunner(), PARAMS, ("thing",))
    stream = predict_stream(predictor, range(0, 250, 5), _read)
    assert next(stream).item == 0
    stream.close()
    assert threading.active_count() == before
