"""Frames from a video file or a camera (``cv2.VideoCapture``: 8-bit BGR, as images are read), and
annotated videos written with ``cv2.VideoWriter`` at the input's frame rate and size."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from instseg_deploy.errors import InstsegError

# A container that says 0 (or nothing) frames per second (cameras, some streams): written at this rate.
FALLBACK_FPS = 30.0
FOURCC = "mp4v"  # MPEG-4 Part 2: the codec every OpenCV build with FFmpeg writes into .mp4


class VideoError(InstsegError):
    """A video or camera cannot be opened or read."""


class VideoWriteError(InstsegError):
    """An annotated video cannot be written (no encoder for the codec or container, an unwritable folder)."""


class VideoSource:
    """An opened video file or camera; iterate :meth:`frames`, then :meth:`close` (or use ``with``)."""

    def __init__(self, capture: cv2.VideoCapture, name: str):
        self._capture = capture
        self.name = name

    @property
    def fps(self) -> float:
        """The container's frames per second, :data:`FALLBACK_FPS` when it says none."""
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        return fps if math.isfinite(fps) and fps > 0 else FALLBACK_FPS

    @property
    def frame_count(self) -> int | None:
        """The container's frame count (an estimate for some formats), None when unknown (cameras)."""
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return int(count) if math.isfinite(count) and count > 0 else None

    def frames(self, max_frames: int = 0) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 BGR frames until the end of the stream, or ``max_frames`` of them (0: no limit)."""
        done = 0
        while max_frames <= 0 or done < max_frames:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            done += 1
            yield frame

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path: str | os.PathLike) -> VideoSource:
    """A video file's frames; a missing file or one OpenCV cannot open raises :class:`VideoError`."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"cannot open video {path} (corrupt, or a codec this OpenCV build cannot decode)")
    return VideoSource(capture, str(path))


def open_camera(index: int) -> VideoSource:
    """Camera number ``index`` (0: the first; /dev/video<index> on Linux)."""
    if index < 0:
        raise VideoError(f"a camera index is 0 or more, got {index}")
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"cannot open camera {index}: no such device, or it is in use or not permitted")
    return VideoSource(capture, f"camera {index}")


class VideoSink:
    """An annotated video being written; the writer is created with the first frame's size."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append an (H, W, 3) uint8 BGR frame; every frame has the first one's size."""
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._writer, self._size = _writer(self.path, self.fps, size), size
        elif size != self._size:  # cv2.VideoWriter would drop the frame without a word
            raise VideoError(f"frame {self.frames} is {size[0]}x{size[1]}, the video started at "
                             f"{self._size[0]}x{self._size[1]}")
        self._writer.write(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
    if not writer.isOpened():
        writer.release()
        raise VideoWriteError(f"cannot write a {FOURCC} video ({size[0]}x{size[1]} at {fps:g} fps) into "
                              f"{path.parent}: OpenCV picks the container from the name's extension (.mp4; "
                              f"this name has {path.suffix or 'none'}) and needs its FFmpeg backend")
    return writer


@contextlib.contextmanager
def video_sink(path: str | os.PathLike, fps: float) -> Iterator[VideoSink]:
    """A :class:`VideoSink` writing straight into ``path``, which a failed block removes again (a block
    that writes no frames raises :class:`VideoWriteError`). OpenCV chooses the container from the name's
    extension, so an atomic temporary must keep it: ``atomic_path(..., keep_suffix=True)`` or
    ``OutputSet.path(..., keep_suffix=True)``, whose cleanup also removes what a killed run left."""
    sink = VideoSink(Path(path), fps)
    try:
        yield sink
        sink.close()
        if not sink.frames:
            raise VideoWriteError(f"no frames to write into {sink.path.parent}: a video needs at least one")
    except BaseException:
        sink.close()
        if sink._writer is not None:  # only a file this sink opened: half a video is no result
            with contextlib.suppress(FileNotFoundError):
                sink.path.unlink()
        raise
