"""Latency of the C++ app (cpp/, ONNX Runtime C++ API) vs the Python ONNX Runtime backend, same
model, same image, same ONNX Runtime library, on this machine's CPU.

Warm: --rounds rounds, each running --repeat timed predictions in the C++ app (after one warm-up
prediction) and then the same number in Python (same warm-up), so that both sides see the same
machine load; medians over all samples, split into preprocess / inference / postprocess (each
side timing its own stages; totals are end to end of one prediction).
Cold: one process from start to results written (C++ `instseg_predict` vs `instseg predict`).

    python benchmarks/cpp_latency.py [--model m.onnx] [--image img.jpg] [--rounds 3] [--repeat 10] [--threads 0]

Without --model it exports the test fixture model (instseg_deploy/demo_data/shapes_r50, raw masks) to
a temporary folder. Builds cpp/ with CMake into --build-dir (default: a temporary folder); needs
what cpp/scripts/install_deps.sh installs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instseg_deploy.demo_data import DEMO_DATA

REPO = Path(__file__).resolve().parent.parent


def build_app(build_dir: Path) -> Path:
    for cmd in (["cmake", "-S", str(REPO / "cpp"), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build_dir), "-j", "2", "--target", "instseg_predict"]):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return build_dir / "instseg_predict"


def export_fixture_model(out_dir: Path) -> Path:
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    model, cfg = load_model(DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl")
    return export_onnx(model, cfg, out_dir / "model.onnx", masks="raw").path


STAGES = ("preprocess", "inference", "postprocess", "total")


def cpp_warm(app: Path, model: Path, image: Path, repeat: int, threads: int, score: float, out: Path) -> dict:
    """Samples (ms) per stage of `repeat` predictions in one app process (after its warm-up)."""
    result = subprocess.run([str(app), "--model", str(model), "--image", str(image), "--out", str(out),
                             "--repeat", str(repeat), "--threads", str(threads), "--score-thresh", str(score),
                             "--no-overlay"], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["samples_ms"]


class PythonSide:
    """The Predictor's own steps, timed one by one (the same calls Predictor.predict makes)."""

    def __init__(self, model: Path, image: Path, threads: int, score: float):
        from instseg_deploy.image_io import read_image
        from instseg_deploy.model_file.metadata import preprocess_params
        from instseg_deploy.runtime.ort import SessionSettings, load_ort_runner

        self.runner = load_ort_runner(model, SessionSettings(threads=threads))
        self.params = preprocess_params(self.runner.meta)
        self.image, _ = read_image(image)
        self.score = score

    def warm(self, repeat: int) -> dict:
        """Samples (ms) per stage of `repeat` predictions after one warm-up."""
        from instseg_deploy.processing.postprocess import postprocess
        from instseg_deploy.processing.preprocess import preprocess

        runner, params, img, score = self.runner, self.params, self.image, self.score
        times: dict[str, list[float]] = {key: [] for key in STAGES}
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            batch = preprocess([img], params, "BGR", pad_to=runner.pad_to)
            t1 = time.perf_counter()
            raw = runner.run(batch)
            t2 = time.perf_counter()
            postprocess(raw.boxes, raw.scores, raw.classes, raw.mask_probs, tuple(batch.image_sizes[0]),
                        tuple(batch.original_sizes[0]), score_thresh=score)
            t3 = time.perf_counter()
            if i == 0:
                continue  # warm-up
            for key, value in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                times[key].append(value * 1000)
        return times


def cold(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--image", type=Path, default=DEMO_DATA / "shapes_val" / "images" / "000000.jpg")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of C++ and Python runs")
    parser.add_argument("--repeat", type=int, default=10, help="timed predictions per side and round")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    parser.add_argument("--score-thresh", type=float, default=0.5)
    parser.add_argument("--build-dir", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or export_fixture_model(tmp)
        app = build_app(args.build_dir or tmp / "build")
        python_side = PythonSide(model, args.image, args.threads, args.score_thresh)
        cpp_samples: dict[str, list[float]] = {key: [] for key in STAGES}
        py_samples: dict[str, list[float]] = {key: [] for key in STAGES}
        for _ in range(args.rounds):
            for side, samples in ((cpp_warm(app, model, args.image, args.repeat, args.threads, args.score_thresh,
                                            tmp / "cpp_out"), cpp_samples),
                                  (python_side.warm(args.repeat), py_samples)):
                for key in STAGES:
                    samples[key].extend(side[key])
        cpp = {key: statistics.median(values) for key, values in cpp_samples.items()}
        py = {key: statistics.median(values) for key, values in py_samples.items()}
        cpp_cold = cold([str(app), "--model", str(model), "--image", str(args.image), "--out", str(tmp / "c1"),
                         "--score-thresh", str(args.score_thresh)])
        py_cold = cold([sys.executable, "-m", "instseg_deploy.cli.main", "predict", str(args.image), "--backend", "ort",
                        "--model", str(model), "--out", str(tmp / "p1"), "--score-thresh", str(args.score_thresh)])

    print(f"model {model.name if args.model else 'fixture shapes_r50 (raw masks)'}, image {args.image.name}, "
          f"median of {args.rounds * args.repeat} runs per side, threads {args.threads or 'default'}")
    print("| stage | C++ (ms) | Python (ms) | Python / C++ |\n|---|---:|---:|---:|")
    for key in ("preprocess", "inference", "postprocess", "total"):
        ratio = f"{py[key] / cpp[key]:.2f}" if cpp[key] >= 0.05 else "-"
        print(f"| {key} | {cpp[key]:.2f} | {py[key]:.2f} | {ratio} |")
    print(f"| cold: process start to results written | {cpp_cold:.0f} | {py_cold:.0f} | {py_cold / cpp_cold:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
