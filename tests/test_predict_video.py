"""`instseg predict` on videos and cameras: annotated video + one JSON line per frame, and video_io alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from instseg_deploy import video_io
from instseg_deploy.atomic import JOURNAL_NAME, MANIFEST_NAME, atomic_path, output_set, read_output_set
from instseg_deploy.cli.main import app
from instseg_deploy.demo_data import DEMO_DATA

runner = CliRunner()
FPS, SIZE, FRAMES = 12.0, (320, 256), 6  # (width, height): mp4v wants even sizes


@pytest.fixture(scope="module")
def model_args():
    return ["--config", str(DEMO_DATA / "shapes_r50" / "config.yaml"),
            "--weights", str(DEMO_DATA / "shapes_r50" / "model_final.pkl")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame mp4v video of shapes images (so frames have detections), written with OpenCV."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    images = sorted((DEMO_DATA / "shapes_val" / "images").glob("*.jpg"))[:FRAMES]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    assert writer.isOpened(), "this OpenCV build cannot write mp4v .mp4"
    for image in images:
        writer.write(cv2.resize(cv2.imread(str(image)), SIZE))
    writer.release()
    return path


def _decoded(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    return frames


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_ids(entries: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in ("image_id", "file_name")} for e in entries]


def test_video_gives_the_frames_predicted_as_images(tmp_path, clip, model_args):
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(clip), *model_args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "frames/s" in result.output and "6 frame(s)" in result.output
    assert set(read_output_set(out)) == {"clip.mp4", "clip.jsonl"}  # complete; no empty results.json
    frames = _decoded(clip)
    assert len(frames) == FRAMES
    annotated = cv2.VideoCapture(str(out / "clip.mp4"))
    assert annotated.get(cv2.CAP_PROP_FPS) == FPS
    assert (annotated.get(cv2.CAP_PROP_FRAME_WIDTH), annotated.get(cv2.CAP_PROP_FRAME_HEIGHT)) == SIZE
    annotated.release()
    drawn = _decoded(out / "clip.mp4")
    assert len(drawn) == FRAMES
    assert np.abs(drawn[0].astype(int) - frames[0]).mean() > 5  # overlays drawn, not the input copied
    lines = _lines(out / "clip.jsonl")
    assert [line["frame"] for line in lines] == list(range(FRAMES))

    # The decoded frames as PNG images (lossless) through the image path: the same results per frame.
    images = tmp_path / "frames"
    images.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(images / f"{i:03d}.png"), frame)
    result = runner.invoke(app, ["predict", str(images), *model_args, "--out", str(tmp_path / "out_images")])
    assert result.exit_code == 0, result.output
    as_images = json.loads((tmp_path / "out_images" / "results.json").read_text())
    for i, line in enumerate(lines):
        expected = _without_ids([e for e in as_images if e["file_name"] == f"{i:03d}.png"])
        assert _without_ids(line["instances"]) == expected, f"frame {i}"
        assert all(e["image_id"] == i for e in line["instances"])
    assert sum(len(line["instances"]) for line in lines) >= FRAMES  # frames have detections to compare
    assert all("counts" in e["segmentation"] for line in lines for e in line["instances"])


def test_max_frames_without_overlap(tmp_path, clip, model_args):
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(clip), *model_args, "--out", str(out), "--max-frames", "2",
                                 "--no-overlap"])
    assert result.exit_code == 0, result.output
    assert len(_decoded(out / "clip.mp4")) == 2 and len(_lines(out / "clip.jsonl")) == 2


def test_unreadable_video_is_named_and_the_rest_is_written(tmp_path, model_args):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 4)
    image = DEMO_DATA / "shapes_val" / "images" / "000000.jpg"
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(image), str(bad), *model_args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 of 2 input(s) could not be read" in errors[0] and "broken.mp4" in errors[0]
    assert set(read_output_set(out)) == {"000000.png", "results.json"}


def test_camera_that_cannot_be_opened(tmp_path, model_args):
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", "--camera", "42", *model_args, "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: cannot open camera 42" in result.output
    assert not out.exists()


@pytest.mark.parametrize("args, expect", [(["--camera", "-1"], "0 or more"),
                                          (["--camera", "0", "x.jpg"], "--camera replaces INPUTS"),
                                          (["--camera", "zero"], "valid integer"),
                                          (["x.mp4", "--max-frames", "-3"], "--max-frames")])
def test_camera_and_frame_options_are_checked(tmp_path, model_args, args, expect):
    result = runner.invoke(app, ["predict", *args, *model_args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and expect in result.output, result.output


def test_ctrl_c_ends_a_camera_and_keeps_its_frames(tmp_path, clip, model_args, monkeypatch):
    """A camera stopped with Ctrl-C: the frames so far are a complete output. The camera is the clip,
    interrupted after 3 frames (the interruption reaches the loop as a real Ctrl-C does: waiting for
    the next frame)."""
    class Interrupted(video_io.VideoSource):
        def frames(self, max_frames=0):
            yield from list(super().frames(3))
            raise KeyboardInterrupt

    monkeypatch.setattr(video_io, "open_camera", lambda index: Interrupted(cv2.VideoCapture(str(clip)), "camera 5"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", "--camera", "5", *model_args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert set(read_output_set(out)) == {"camera5.mp4", "camera5.jsonl"}
    assert len(_decoded(out / "camera5.mp4")) == 3 and len(_lines(out / "camera5.jsonl")) == 3


def test_video_io_errors(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI nonsense")
    with pytest.raises(video_io.VideoError, match="cannot open video"):
        video_io.open_video(bad)
    with pytest.raises(video_io.VideoError, match="video not found"):
        video_io.open_video(tmp_path / "nope.mp4")
    frame = np.zeros((32, 48, 3), np.uint8)
    # OpenCV picks the container by the name: ".tmp" has none, so the writer cannot be created.
    with pytest.raises(video_io.VideoWriteError, match="cannot write"), \
            video_io.video_sink(tmp_path / "a.tmp", 10) as sink:
        sink.write(frame)
    with pytest.raises(video_io.VideoError, match="48x32"), video_io.video_sink(tmp_path / "b.mp4", 10) as sink:
        sink.write(frame)
        sink.write(np.zeros((48, 32, 3), np.uint8))
    with pytest.raises(video_io.VideoWriteError, match="no frames"), video_io.video_sink(tmp_path / "c.mp4", 10):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.avi"]  # nothing half-written left


def test_sigkilled_video_write_leaves_only_a_temporary_the_next_run_removes(tmp_path):
    out = tmp_path / "out"
    script = ("import os, signal, sys\n"
              "import numpy as np\n"
              "from instseg_deploy.atomic import output_set\n"
              "from instseg_deploy.video_io import video_sink\n"
              "with output_set(sys.argv[1]) as files, files.path('v.mp4', keep_suffix=True) as tmp, "
              "video_sink(tmp, 10) as sink:\n"
              "    sink.write(np.zeros((32, 48, 3), np.uint8))\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir() if p.name != JOURNAL_NAME)
    assert len(left) == 1 and left[0].startswith(".v.mp4.instseg-") and left[0].endswith(".tmp.mp4"), left
    with output_set(out) as files:
        files.write_json("results.json", [])
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_NAME, "results.json"])


def test_video_sink_keeps_fps_and_frames(tmp_path):
    # straight into the temporary an output set hands out, which keeps the .mp4 OpenCV needs
    with atomic_path(tmp_path / "v.mp4", keep_suffix=True) as tmp, video_io.video_sink(tmp, 7.0) as sink:
        for value in (0, 120, 240):
            sink.write(np.full((32, 48, 3), value, np.uint8))
        assert sorted(p.name for p in tmp_path.iterdir()) == [tmp.name]  # no second file beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    with video_io.open_video(tmp_path / "v.mp4") as video:
        assert video.fps == 7.0 and video.frame_count == 3
        assert [round(f.mean() / 120) for f in video.frames()] == [0, 1, 2]  # lossy codec: near, in order
