"""Predict a stream of inputs with host work overlapped with inference, results in input order.

Three stages joined by bounded queues: (1) read + preprocess a batch, (2) run the model, (3)
postprocess. Stage 1 and 3 run in threads beside the model, so decoding the next image and pasting
the previous one's masks hide behind inference (numpy, Pillow, OpenCV, ONNX Runtime and torch all
release the GIL in their heavy loops). Each stage is one FIFO worker, so order is kept.

An input that cannot be read or preprocessed is reported with its own error and the stream goes
on; an error of the model or of postprocessing ends the stream (it is raised to the consumer).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from instseg_deploy.errors import InstsegError
from instseg_deploy.runtime.predictor import Predictor
from instseg_deploy.structures import Instances

Item = TypeVar("Item")
_END = object()
_POLL_S = 0.1

# What a failed read/preprocess of one input may raise: reported for that input, the rest go on.
INPUT_ERRORS = (InstsegError, ValueError, OSError)


@dataclass
class Prediction(Generic[Item]):
    """One input's outcome: ``instances`` (with the decoded ``image``), or the ``error`` that stopped it."""

    item: Item
    image: np.ndarray | None = None
    instances: Instances | None = None
    error: Exception | None = None


class _Stopped(Exception):
    """The consumer went away; the worker stops."""


def _put(q: queue.Queue, value: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(value, timeout=_POLL_S)
            return
        except queue.Full:
            continue
    raise _Stopped


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    raise _Stopped


def _batches(predictor: Predictor, items: Iterable[Item], read: Callable[[Item], np.ndarray],
             batch_size: int) -> Iterator[tuple[list[Prediction], Any]]:
    """(predictions of up to ``batch_size`` inputs, preprocessed batch of the readable ones or None)."""
    chunk: list[Prediction] = []
    for item in items:
        prediction = Prediction(item)
        try:
            prediction.image = read(item)
        except INPUT_ERRORS as e:
            prediction.error = e
        chunk.append(prediction)
        if len(chunk) == batch_size:
            yield from _preprocessed(predictor, chunk)
            chunk = []
    if chunk:
        yield from _preprocessed(predictor, chunk)


def _preprocessed(predictor: Predictor, chunk: list[Prediction]) -> Iterator[tuple[list[Prediction], Any]]:
    good = [p for p in chunk if p.error is None]
    batch, error = None, None
    if good:
        try:
            batch = predictor.preprocess_batch([p.image for p in good])
        except INPUT_ERRORS as e:
            error = e
    if error is None:
        yield chunk, batch
    elif len(good) == 1:
        good[0].error = error
        yield chunk, None
    else:  # one input spoils the batch: preprocess them one by one to name it, keeping the order
        for p in chunk:
            yield from _preprocessed(predictor, [p]) if p.error is None else [([p], None)]


def predict_stream(predictor: Predictor, items: Iterable[Item], read: Callable[[Item], np.ndarray],
                   batch_size: int = 1, overlap: bool = True, depth: int = 2) -> Iterator[Prediction[Item]]:
    """One :class:`Prediction` per input of ``items``, in order. ``read`` turns an input into an (H, W, 3)
    uint8 image in the predictor's channel order. ``overlap``: run reading/preprocessing and
    postprocessing in threads beside the model, with at most ``depth`` batches waiting between stages."""
    if not overlap:
        for predictions, batch in _batches(predictor, items, read, batch_size):
            yield from _finish(predictor, predictions, batch, None if batch is None else predictor.runner.run(batch))
        return
    stop = threading.Event()
    prepared, ran, done = (queue.Queue(depth) for _ in range(3))

    def produce():
        for entry in _batches(predictor, items, read, batch_size):
            _put(prepared, entry, stop)

    def infer(entry):
        predictions, batch = entry
        return predictions, batch, None if batch is None else predictor.runner.run(batch)

    def finish(entry):
        return list(_finish(predictor, *entry))

    threads = [_start(produce, None, prepared, stop), _start(infer, prepared, ran, stop),
               _start(finish, ran, done, stop)]
    try:
        while True:
            entry = done.get()
            if entry is _END:
                break
            if isinstance(entry, _Failed):
                raise entry.error
            yield from entry
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@dataclass
class _Failed:
    """A stage's exception, passed down the queues after everything it finished before failing."""

    error: BaseException


def _start(fn: Callable, source: queue.Queue | None, sink: queue.Queue, stop: threading.Event) -> threading.Thread:
    """A worker thread: ``fn()`` producing into ``sink`` (no ``source``), or ``fn(entry)`` for each entry
    of ``source``; the end marker or a failure is passed on to ``sink``."""
    def body():
        try:
            try:
                if source is None:
                    fn()
                    entry = _END
                else:
                    while (entry := _get(source, stop)) is not _END and not isinstance(entry, _Failed):
                        _put(sink, fn(entry), stop)
            except _Stopped:
                return
            except BaseException as e:  # raised in the consumer, after the results before it
                entry = _Failed(e)
            _put(sink, entry, stop)
        except _Stopped:
            pass

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _finish(predictor: Predictor, predictions: list[Prediction], batch, raw) -> Iterator[Prediction]:
    """Postprocess one batch: the readable inputs get their instances, in order."""
    instances = iter(predictor.postprocess_batch(batch, raw)) if batch is not None else iter(())
    for p in predictions:
        if p.error is None:
            p.instances = next(instances)
        yield p
