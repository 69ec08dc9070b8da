"""End-to-end host work around the model (issue: masks, device-side processing, overlap), on the CPU.

Three measurements, printed as Markdown on stdout (progress on stderr):

1. Stages at 800x1333, ORT FP32, the fixture checkpoint (demo_data/shapes_r50) on generated shapes
   images with many instances: per image, preprocess once, run the model once, then postprocess
   with every mask format in turn (dense, rle, cropped, none): all formats timed on the same model
   outputs, interleaved. Host share = (pre + post) / (pre + model + post), medians.
2. Overlap: the same images through runtime.pipeline.predict_stream with and without overlap,
   alternating runs, images/s of each.
3. `instseg eval` peak RSS with few and with many detections per image (--score-thresh), each
   run in a process of its own, rle and dense mask formats.

    python benchmarks/end_to_end.py --work /tmp/bench_e2e --images 12 --repeats 3 --threads 2

The model export and the dataset are kept in --work and reused by the next run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORMATS = ("dense", "rle", "cropped", "none")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(work: Path, num_images: int) -> tuple[Path, Path]:
    """(fixture model exported to ONNX, a generated COCO set of large images with many shapes)."""
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    work.mkdir(parents=True, exist_ok=True)
    onnx = work / "fixture.onnx"
    if not onnx.is_file():
        log("exporting the fixture model")
        # Resized to 800x1333 as the R50-FPN-3x configs do (the fixture's own test size is 320/512);
        # its test threshold (0.05) is baked in, --score-thresh raises it per run.
        net, cfg = load_model(DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl",
                              overrides=["INPUT.MIN_SIZE_TEST", "800", "INPUT.MAX_SIZE_TEST", "1333"])
        export_onnx(net, cfg, onnx)
    data = work / "large"
    if not (data / "annotations.json").is_file():
        log(f"generating {num_images} images 800..1333 px with up to 40 shapes")
        generate(data, num_images, seed=3, image_size=(800, 1333), max_instances=40)
    return onnx, data


def stages(onnx: Path, data: Path, threads: int, repeats: int) -> dict:
    import cv2

    from instseg_deploy.runtime import load_predictor

    predictor = load_predictor("ort", model=onnx, threads=threads, score_thresh=None)  # the model's own, as measured
    images = [cv2.imread(str(p)) for p in sorted((data / "images").glob("*.jpg"))]
    times = {k: [] for k in ("pre", "model", *FORMATS)}
    detections = []
    predictor.predict(images[:1])  # warm-up
    for r in range(repeats):
        log(f"stages: pass {r + 1}/{repeats}")
        for image in images:
            t0 = time.perf_counter()
            batch = predictor.preprocess_batch([image])
            t1 = time.perf_counter()
            raw = predictor.runner.run(batch)
            t2 = time.perf_counter()
            times["pre"].append(t1 - t0)
            times["model"].append(t2 - t1)
            for fmt in FORMATS:
                predictor.mask_format = fmt
                t3 = time.perf_counter()
                out = predictor.postprocess_batch(batch, raw)
                times[fmt].append(time.perf_counter() - t3)
            detections.append(len(out[0]))
    return {"ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
            "detections": (min(detections), statistics.median(detections), max(detections)),
            "input": "x".join(map(str, batch.images.shape[2:]))}


def overlap(onnx: Path, data: Path, threads: int, repeats: int) -> dict:
    from instseg_deploy.image_io import read_image
    from instseg_deploy.runtime import load_predictor
    from instseg_deploy.runtime.pipeline import predict_stream

    predictor = load_predictor("ort", model=onnx, threads=threads, mask_format="rle", score_thresh=None)
    paths = sorted((data / "images").glob("*.jpg"))
    rates = {True: [], False: []}
    for r in range(repeats):
        for on in (True, False) if r % 2 == 0 else (False, True):
            log(f"overlap: pass {r + 1}/{repeats}, overlap {'on' if on else 'off'}")
            start = time.perf_counter()
            n = sum(1 for p in predict_stream(predictor, paths, lambda path: read_image(path)[0], overlap=on)
                    if p.error is None)
            rates[on].append(n / (time.perf_counter() - start))
    return {"on": statistics.median(rates[True]), "off": statistics.median(rates[False])}


def eval_rss(onnx: Path, data: Path, threads: int, score_thresh: float, mask_format: str) -> tuple[float, int]:
    """(peak RSS MB of `instseg eval` in a process of its own, detections written)."""
    out = Path(f"/tmp/instseg_e2e_eval_{score_thresh}_{mask_format}")
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "instseg_deploy.cli.main", "eval", "--backend", "ort",
           "--model", str(onnx), "--images", str(data / "images"), "--annotations", str(data / "annotations.json"),
           "--threads", str(threads), "--score-thresh", str(score_thresh), "--mask-format", mask_format,
           "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss_mb = int(result.stdout.strip().splitlines()[-1]) / 1024
    return rss_mb, len(json.loads((out / "detections.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_e2e"))
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from instseg_deploy.bench.machine import cpu_line, machine_info

    onnx, data = prepare(args.work, args.images)
    print(f"{cpu_line(machine_info('cpu'))}; ONNX Runtime FP32, {args.threads} threads; fixture checkpoint "
          f"(demo_data/shapes_r50, exported with INPUT.MIN_SIZE_TEST 800 INPUT.MAX_SIZE_TEST 1333) on "
          f"{args.images} generated images of 800..1333 px sides.\n")
    s = stages(onnx, data, args.threads, args.repeats)
    ms = s["ms"]
    lo, mid, hi = s["detections"]
    print(f"## Stages (medians over {args.images} images x {args.repeats}, input {s['input']} padded; "
          f"detections per image {lo}..{hi}, median {mid})\n")
    print("| mask format | pre ms | model ms | post ms | end to end ms | host share |")
    print("|---|---|---|---|---|---|")
    for fmt in FORMATS:
        e2e = ms["pre"] + ms["model"] + ms[fmt]
        print(f"| {fmt} | {ms['pre']:.1f} | {ms['model']:.1f} | {ms[fmt]:.1f} | {e2e:.1f} | "
              f"{100 * (ms['pre'] + ms[fmt]) / e2e:.1f}% |")
    o = overlap(onnx, data, args.threads, args.repeats)
    print(f"\n## Overlap (predict_stream, rle, alternating runs)\n\n| overlap | images/s |\n|---|---|\n"
          f"| off | {o['off']:.3f} |\n| on | {o['on']:.3f} ({o['on'] / o['off']:.2f}x) |")
    print("\n## `instseg eval` peak RSS, a process per run\n")
    print("| --score-thresh | mask format | detections | per image | peak RSS MB |")
    print("|---|---|---|---|---|")
    for thresh in (0.9, 0.05):
        for fmt in ("rle", "dense"):
            log(f"eval: score-thresh {thresh}, {fmt}")
            rss, n = eval_rss(onnx, data, args.threads, thresh, fmt)
            print(f"| {thresh} | {fmt} | {n} | {n / args.images:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
