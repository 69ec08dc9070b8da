"""`instseg predict`: overlays and COCO-format results for images, folders, globs, videos or a camera."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import cv2
import typer
from rich.markup import escape

from instseg_deploy.cli.common import (
    BackendOption,
    ConfigOption,
    HintOption,
    ModelNameOption,
    ModelOption,
    PrecisionOption,
    ProtocolOption,
    ProvidersOption,
    ThreadsOption,
    UrlOption,
    WeightsOption,
    check_mask_format_option,
    console,
    mask_format_option,
    overlap_option,
    progress_bar,
    providers_list,
    rate_text,
    user_errors,
)
from instseg_deploy.errors import InstsegError
from instseg_deploy.runtime.factory import DEFAULT_SCORE_THRESH

if TYPE_CHECKING:
    from rich.progress import Progress

    from instseg_deploy.atomic import OutputSet
    from instseg_deploy.runtime.pipeline import Prediction
    from instseg_deploy.runtime.predictor import Predictor
    from instseg_deploy.video_io import VideoSink, VideoSource

EXAMPLES = """
Examples:

  instseg predict photo.jpg --config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \\
      --weights model_final_f10217.pkl --out predictions/

  instseg predict images/ more.png -c output/config.yaml -w output/model_final.pth --out pred --score-thresh 0.3

  instseg predict images/ --backend triton --url 127.0.0.1:8000 --out pred_served

  instseg predict "photos/**/*.jpg" --recursive -c output/config.yaml -w output/model_final.pth --out pred

  instseg predict clip.mp4 -c output/config.yaml -w output/model_final.pth --out pred_video
  (pred_video/clip.mp4: the annotated video; pred_video/clip.jsonl: one line of COCO results per frame)

  instseg predict --camera 0 --max-frames 300 -c output/config.yaml -w output/model_final.pth --out pred_cam

  instseg predict images/ --backend ort --model model.onnx --out pred_ort

  instseg predict images/ --backend openvino --model model.xml --precision bf16 --out pred_ov
"""

NAMED_OTHERS = 3  # files that are neither images nor videos named in the note (then a count)
NAMED_FAILURES = 5  # unreadable inputs named in the final error line (each got its own "skipped:" line)


@dataclass
class _Run:
    """What every input of one run shares: the predictor, where outputs go, and what was unreadable."""

    predictor: Predictor
    files: OutputSet
    progress: Progress
    overlap: bool
    max_frames: int
    failures: list[str]


def _unique_stems(paths: list[Path]) -> list[str]:
    """Output names per input; inputs with the same stem from different folders get a suffix."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}_{n}")
    return stems


@user_errors
def predict(
    inputs: Optional[list[str]] = typer.Argument(
        None, metavar="INPUTS... [KEY VALUE]...", show_default=False,
        help="Image or video files, folders of them and quoted globs (\"imgs/*.jpg\"), then optional detectron2-"
        "style config overrides (e.g. MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3)."),
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    backend: str = BackendOption,
    model: Optional[Path] = ModelOption,
    url: Optional[str] = UrlOption,
    protocol: str = ProtocolOption,
    model_name: str = ModelNameOption,
    providers: str = ProvidersOption,
    threads: int = ThreadsOption,
    precision: str = PrecisionOption,
    hint: str = HintOption,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: overlays *.png and results.json for images, "
                             "<video>.mp4 (annotated) and <video>.jsonl (one line per frame) per video.",
                             show_default=False),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Folders: their subfolders too; globs: ** "
                                   "matches any depth."),
    camera: Optional[int] = typer.Option(None, "--camera", metavar="INDEX", show_default=False,
                                         help="Predict camera INDEX (0: the first) instead of INPUTS, into "
                                         "camera<INDEX>.mp4/.jsonl; Ctrl-C ends it and keeps what was recorded."),
    max_frames: int = typer.Option(0, "--max-frames", help="Videos and --camera: stop after this many frames "
                                   "(0: at the end of the stream)."),
    score_thresh: float = typer.Option(DEFAULT_SCORE_THRESH, "--score-thresh", help="Keep detections scoring at "
                                       "least this (the same default as the Python API's load_predictor)."),
    class_names: Optional[str] = typer.Option(None, "--class-names",
                                              help="Comma-separated names or a file with one per line."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    mask_format: str = mask_format_option("rle", "Masks in results.json and the overlays: rle (made from each "
                                          "box region alone), dense (through full-image masks, the reference "
                                          "path; same output) or none (boxes only)."),
    overlap: bool = overlap_option(),
) -> None:
    """Run the model on images and videos; write an overlay per image, an annotated video per video, and
    COCO-format results (results.json, <video>.jsonl)."""
    from instseg_deploy.atomic import output_set
    from instseg_deploy.class_names import parse_class_names
    from instseg_deploy.config.overrides import split_overrides
    from instseg_deploy.runtime.factory import load_predictor
    from instseg_deploy.video_io import open_camera

    _check_options(score_thresh, mask_format, max_frames)
    words, overrides = split_overrides(list(inputs or []))
    images, videos = _inputs(words, camera, recursive, out)
    with contextlib.ExitStack() as stack:
        source = None if camera is None else stack.enter_context(open_camera(camera))  # before the model loads
        # "rle": paste each box region once, then both the RLE and the overlay come from that region.
        predictor = load_predictor(backend, config=config, weights=weights, model=model, score_thresh=score_thresh,
                                   device=device, providers=providers_list(providers), threads=threads,
                                   precision=precision, hint=hint, overrides=overrides,
                                   mask_format="cropped" if mask_format == "rle" else mask_format, url=url,
                                   protocol=protocol, model_name=model_name)
        if class_names:
            predictor.class_names = parse_class_names(class_names, len(predictor.class_names))
        # One output set: everything this run writes, its manifest last; a failed run leaves no complete set.
        files = stack.enter_context(output_set(out))
        run = _Run(predictor, files, stack.enter_context(progress_bar()), overlap, max_frames, [])
        summary = _predict_all(run, images, videos, source, camera)
        total = len(images) + len(videos) + (source is not None)
        if run.failures and not files.files:  # nothing to show: no output set at all
            raise InstsegError(_unread(run.failures, total))
    console.print(f"{summary} -> {escape(str(out))}/", highlight=False)
    if run.failures:
        raise InstsegError(_unread(run.failures, total))


def _check_options(score_thresh: float, mask_format: str, max_frames: int) -> None:
    if not 0.0 <= score_thresh <= 1.0:
        raise InstsegError(f"--score-thresh must be in [0, 1], got {score_thresh}")
    if check_mask_format_option(mask_format) == "cropped":
        raise InstsegError("--mask-format cropped is for the Python API; results.json holds RLE (use rle)")
    if max_frames < 0:
        raise InstsegError(f"--max-frames must be 0 (no limit) or more, got {max_frames}")


def _inputs(words: list[str], camera: int | None, recursive: bool, out: Path) -> tuple[list[Path], list[Path]]:
    """(images, videos) that INPUTS name; the files they hold that are neither get one note."""
    from instseg_deploy.image_io import expand_inputs, is_video

    if camera is not None:
        if words:
            raise InstsegError(f"--camera replaces INPUTS: give one or the other (got {words[0]!r} too)")
        return [], []
    if not words:
        raise InstsegError("no images given (only config overrides): name images, videos, folders or globs, "
                           "or --camera INDEX")
    found = expand_inputs(words, recursive)
    if found.other:
        console.print(f"[yellow]note:[/] {len(found.other)} file(s) neither image nor video, not predicted: "
                      f"{escape(_first_few(found.other, NAMED_OTHERS))}", highlight=False)
    images = [p for p in found.paths if not is_video(p)]
    videos = [p for p in found.paths if is_video(p)]
    _check_not_overwritten(out, images, videos)
    return images, videos


def _check_not_overwritten(out: Path, images: list[Path], videos: list[Path]) -> None:
    """An output named like an input in the inputs' folder (`predict a.png --out .`) would replace it."""
    inputs = {p.resolve(): p for p in images + videos}
    names = [f"{s}.png" for s in _unique_stems(images)]
    names += [f"{s}{ext}" for s in _unique_stems(videos) for ext in (".mp4", ".jsonl")]
    for name in names:
        if (out / name).resolve() in inputs:
            raise InstsegError(f"--out {out} would replace the input {inputs[(out / name).resolve()]} with the "
                               f"output {name}; choose another output folder")


def _predict_all(run: _Run, images: list[Path], videos: list[Path], source: VideoSource | None,
                 camera: int | None) -> str:
    """Predict every input into ``run.files``; the summary line."""
    from instseg_deploy.video_io import VideoError, open_video

    parts = []
    if images:
        results, done = _predict_images(run, images)
        if done:  # no results.json when no image could be read: an empty one would pass for "no detections"
            run.files.write_json("results.json", results)
            parts.append(f"{done} image(s), {len(results)} instance(s) (overlays *.png, results.json)")
    frames = []
    for path, stem in zip(videos, _unique_stems(videos)):
        try:
            with open_video(path) as video:
                frames.append(_predict_video(run, video, stem, live=False))
        except VideoError as e:  # this video alone: named, skipped, and the exit code says so
            _skipped(run, path, e)
    if source is not None:
        frames.append(_predict_video(run, source, f"camera{camera}", live=True))
    if videos or source is not None:
        parts.append(f"{len(frames)} video(s), {sum(frames)} frame(s) (*.mp4, *.jsonl)")
    return "; ".join(parts)


def _skipped(run: _Run, path: Path, error: Exception) -> None:
    reason = str(error)
    run.failures.append(reason if str(path) in reason else f"{path}: {reason}")
    console.print(f"[red]skipped:[/] {escape(run.failures[-1])}", highlight=False)


def _predict_images(run: _Run, paths: list[Path]) -> tuple[list[dict], int]:
    """Overlays <stem>.png into the output set; (COCO results of all images, images read)."""
    from instseg_deploy.coco_format import instances_to_coco
    from instseg_deploy.image_io import read_image
    from instseg_deploy.runtime.pipeline import predict_stream
    from instseg_deploy.visualize import draw_instances

    def read(path: Path):
        image, note = read_image(path)
        if note:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        return image

    task = run.progress.add_task("images", total=len(paths), rate="")
    results, done, start = [], 0, time.perf_counter()
    stream = predict_stream(run.predictor, paths, read, overlap=run.overlap)
    with contextlib.closing(stream):
        for image_id, (prediction, stem) in enumerate(zip(stream, _unique_stems(paths)), start=1):
            run.progress.advance(task)
            if prediction.error is not None:  # this input alone: named, skipped, and the exit code says so
                _skipped(run, prediction.item, prediction.error)
                continue
            overlay = draw_instances(prediction.image, prediction.instances, run.predictor.class_names)
            run.files.write_bytes(f"{stem}.png", cv2.imencode(".png", overlay)[1].tobytes())
            for entry in instances_to_coco(prediction.instances, image_id):
                entry["file_name"] = prediction.item.name
                results.append(entry)
            done += 1
            run.progress.update(task, rate=rate_text(done, time.perf_counter() - start))
    return results, done


def _predict_video(run: _Run, source: VideoSource, stem: str, live: bool) -> int:
    """``source``'s frames -> <stem>.mp4 (annotated, at the source's frame rate and size) and <stem>.jsonl
    (``{"frame": i, "instances": [COCO results entries]}`` per frame) in the output set; the frame count.
    ``live`` (a camera): Ctrl-C ends the stream and keeps what was recorded."""
    from instseg_deploy.runtime.pipeline import predict_stream
    from instseg_deploy.video_io import VideoError, video_sink

    total = source.frame_count if not run.max_frames else min(source.frame_count or run.max_frames, run.max_frames)
    task = run.progress.add_task(escape(Path(source.name).name), total=total, rate="")
    start = time.perf_counter()
    stream = predict_stream(run.predictor, enumerate(source.frames(run.max_frames)), lambda item: item[1],
                            overlap=run.overlap)
    with run.files.path(f"{stem}.mp4", keep_suffix=True) as video_tmp, run.files.path(f"{stem}.jsonl") as lines_tmp, \
            video_sink(video_tmp, source.fps) as sink, open(lines_tmp, "w", encoding="utf-8") as lines, \
            contextlib.closing(stream):
        for prediction in _until_interrupted(stream, live):
            if prediction.error is not None:
                raise VideoError(f"{source.name}: frame {prediction.item[0]}: {prediction.error}")
            _write_frame(run, sink, lines, prediction)
            run.progress.update(task, advance=1, rate=rate_text(sink.frames, time.perf_counter() - start, "frames"))
        if not sink.frames:
            raise VideoError(f"{source.name}: no frames could be read")
    return sink.frames


def _write_frame(run: _Run, sink: VideoSink, lines, prediction: Prediction) -> None:
    from instseg_deploy.coco_format import instances_to_coco
    from instseg_deploy.visualize import draw_instances

    index, instances = prediction.item[0], prediction.instances
    sink.write(draw_instances(prediction.image, instances, run.predictor.class_names))
    lines.write(json.dumps({"frame": index, "instances": instances_to_coco(instances, index)}) + "\n")


def _until_interrupted(stream: Iterable, live: bool) -> Iterator:
    """``stream``; for a live source, Ctrl-C (or SIGTERM) while waiting for the next frame ends it."""
    try:
        yield from stream
    except KeyboardInterrupt:
        if not live:
            raise
        console.print("stopped: the frames so far are kept", highlight=False)


def _unread(failures: list[str], total: int) -> str:
    return f"{len(failures)} of {total} input(s) could not be read: {_first_few(failures, NAMED_FAILURES)}"


def _first_few(items: list, limit: int) -> str:
    """The first ``limit`` items, comma-separated, then how many more there are."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(str(item) for item in items[:limit]) + more


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(predict)
