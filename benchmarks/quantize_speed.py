"""FP32 vs INT8 (and FP16) ONNX Runtime CPU throughput of one checkpoint at 800x1333.

Exports the checkpoint (or, without --weights, the config's architecture with seeded weights, batch
norms standardized on the first calibration image so the ROI heads get a trained model's proposals:
bench.seeded), quantizes it with `instseg quantize`'s
code (symmetric-int8 QDQ, TensorRT-compatible; optionally also the uint8 ORT-CPU layout),
then times every model on a real photo resized to exactly 800x1333 (padded to 800x1344).
Models are timed in interleaved rounds so that load from other processes hits all of them
alike; the table gives the median and the spread (min-max) of every single run, in wall-clock
images/s and in process CPU seconds per image (less sensitive to a busy machine).

    python benchmarks/quantize_speed.py --config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \\
        --calib tests/data/detectron2/photos --rounds 3 --iters 2 [--fp16] [--uint8] [--threads 0]

Prints a markdown table on stdout (progress on stderr). Model files are kept in --work and
reused by the next run (delete the folder to rebuild).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "tests" / "data" / "detectron2" / "photos" / "astronaut.png"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export_fp32(config: Path, weights: Path | None, out: Path, standardize_on: Path) -> Path:
    """The FP32 export of ``weights`` (or of seeded weights, batch norms standardized on the image
    ``standardize_on``: bench.seeded) with dynamic shapes."""
    from instseg_deploy.bench.seeded import seeded_model_from_config
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    if out.is_file():
        return out
    if weights is not None:
        model, cfg = load_model(config, weights)
    else:
        model, cfg = seeded_model_from_config(config, standardize_on)
    log(f"exporting {out.name}")
    return export_onnx(model.eval(), cfg, out).path


def build_models(args) -> dict[str, Path]:
    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.quantize.fp16 import convert_fp16
    from instseg_deploy.quantize.qdq import QuantizeSettings, quantize_int8

    args.work.mkdir(parents=True, exist_ok=True)
    calib = calibration_images(args.calib, num_images=args.num_calib)
    # Seeded exports get their own names: files of the seeded weights before bench.seeded are not reused.
    stem = "model" if args.weights is not None else "seeded"
    fp32 = export_fp32(args.config, args.weights, args.work / f"{stem}.onnx", standardize_on=calib[0])
    models = {"FP32": fp32}
    variants = [("INT8 (int8 QDQ, TensorRT-compatible)", "int8")]
    if args.uint8:
        variants.append(("INT8 (uint8 QDQ, ORT-CPU layout)", "uint8"))
    for label, activations in variants:
        out = args.work / f"{stem}.{activations}.onnx"
        if not out.is_file():
            log(f"quantizing {out.name} on {len(calib)} calibration images")
            quantize_int8(fp32, out, calib, QuantizeSettings(activations=activations),
                          cache_path=args.work / f"{stem}.{activations}.calib.json",
                          on_image=lambda done, total: log(f"  calibration {done}/{total}"))
        models[label] = out
    if args.fp16:
        out = args.work / f"{stem}.fp16.onnx"
        if not out.is_file():
            convert_fp16(fp32, out)
        models["FP16"] = out
    return models


def benchmark_input(meta: dict) -> dict[str, np.ndarray]:
    """The photo resized to exactly 800x1333, preprocessed as the model's metadata says."""
    import cv2

    from instseg_deploy.image_io import read_image
    from instseg_deploy.model_file.metadata import preprocess_params
    from instseg_deploy.processing.preprocess import preprocess

    image = cv2.resize(read_image(PHOTO)[0], (1333, 800), interpolation=cv2.INTER_LINEAR)
    params = dataclasses.replace(preprocess_params(meta), min_size=800, max_size=1333)  # whatever the config says
    batch = preprocess([image], params)
    return {"images": batch.images, "image_sizes": batch.image_sizes}


def time_models(models: dict[str, Path], threads: int, rounds: int, iters: int) -> dict[str, dict]:
    from instseg_deploy.runtime.ort import SessionSettings, load_ort_runner

    runners = {name: load_ort_runner(path, SessionSettings(threads=threads)) for name, path in models.items()}
    feeds = benchmark_input(next(iter(runners.values())).meta)
    stats = {name: {"wall": [], "cpu": [], "detections": 0} for name in runners}
    for name, runner in runners.items():  # warm-up: first-run allocations and kernel selection
        out = runner.session.run(None, feeds)
        stats[name]["detections"] = int(out[0].shape[0])
    for r in range(rounds):
        for name, runner in runners.items():
            for _ in range(iters):
                wall, cpu = time.perf_counter(), time.process_time()
                runner.session.run(None, feeds)
                stats[name]["wall"].append(time.perf_counter() - wall)
                stats[name]["cpu"].append(time.process_time() - cpu)
            log(f"  round {r + 1}/{rounds} {name}: {statistics.median(stats[name]['wall'][-iters:]):.2f} s/img")
    stats["_shape"] = {"shape": list(feeds["images"].shape)}
    return stats


def markdown(stats: dict[str, dict], threads: int) -> str:
    shape = stats.pop("_shape")["shape"]
    base = statistics.median(stats["FP32"]["wall"])
    base_cpu = statistics.median(stats["FP32"]["cpu"])
    lines = [f"ONNX Runtime CPU, input {shape[2]}x{shape[3]} (800x1333 image), batch 1, "
             f"threads {threads or 'default'}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} logical cores", "",
             "| model | images/s (median) | images/s spread | speed-up (wall) | CPU s/img (median) | "
             "speed-up (CPU time) | runs | detections |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in stats.items():
        wall, cpu = statistics.median(s["wall"]), statistics.median(s["cpu"])
        lines.append(f"| {name} | {1 / wall:.3f} | {1 / max(s['wall']):.3f}-{1 / min(s['wall']):.3f} | "
                     f"{base / wall:.2f}x | {cpu:.2f} | {base_cpu / cpu:.2f}x | {len(s['wall'])} | {s['detections']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path,
                        default=REPO / "configs" / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_3x.yaml")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint (default: seeded random weights)")
    parser.add_argument("--calib", type=Path, default=REPO / "tests" / "data" / "detectron2" / "photos",
                        help="calibration image folder")
    parser.add_argument("--num-calib", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("quantize_speed_models"))
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=2, help="runs per model per round")
    parser.add_argument("--fp16", action="store_true", help="also time the FP16 model (slow on CPUs)")
    parser.add_argument("--uint8", action="store_true", help="also time the uint8-activation ORT-CPU layout")
    parser.add_argument("--build-only", action="store_true", help="export and quantize, do not time")
    args = parser.parse_args()
    models = build_models(args)
    if args.build_only:
        return
    stats = time_models(models, args.threads, args.rounds, args.iters)
    print(markdown(stats, args.threads))


if __name__ == "__main__":
    main()
