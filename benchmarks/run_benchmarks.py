"""Regenerate benchmarks/RESULTS.md for the machine this runs on.

    python benchmarks/run_benchmarks.py [--quick]

Same checkpoint everywhere: the detectron2-trained R50-FPN fixture (tests/data/detectron2/shapes_r50).
Rows: torch eager vs ONNX Runtime FP32 (and INT8 / FP16 when `instseg quantize` is available) at
800x1333 and at the model's own 320-short-side size, a batch/threads sweep at the small size.
Run it on an idle machine: it measures wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "detectron2"
CONFIG = FIXTURE / "shapes_r50" / "config.yaml"
WEIGHTS = FIXTURE / "shapes_r50" / "model_final.pkl"
CALIB = FIXTURE / "photos"


def instseg(*args: str) -> None:
    print("+ instseg " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "instseg_deploy.cli.main", *args], check=True)


def quantized_models(work: Path, fp32: Path) -> list[Path]:
    """INT8 (QDQ) and FP16 variants, when this checkout has `instseg quantize`."""
    probe = subprocess.run([sys.executable, "-m", "instseg_deploy.cli.main", "quantize", "--help"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return []
    int8, fp16 = work / "model.int8.onnx", work / "model.fp16.onnx"
    instseg("quantize", "--model", str(fp32), "--calib", "--images", str(CALIB), "--out", str(int8))
    instseg("quantize", "--model", str(fp32), "--fp16", "--out", str(fp16))
    return [int8, fp16]


def bench(work: Path, name: str, models: list[Path], *extra: str) -> dict:
    out = work / f"{name}.json"
    args = ["bench", "--backend", "torch,ort", "--config", str(CONFIG), "--weights", str(WEIGHTS),
            "--json", str(out), *extra]
    for m in models:
        args += ["--model", str(m)]
    instseg(*args)
    return json.loads(out.read_text())


def ratio_lines(result: dict) -> list[str]:
    rows = result["rows"]
    lines = []
    for batch, threads in sorted({(r["batch"], r["threads"]) for r in rows}):
        group = {r["label"]: r for r in rows if r["batch"] == batch and r["threads"] == threads}
        torch_row = group.get("torch fp32")
        for label, row in group.items():
            if label != "torch fp32" and torch_row:
                lines.append(f"- batch {batch}, {threads} thread(s): **{label} / torch = "
                             f"{row['images_per_s'] / torch_row['images_per_s']:.2f}x** images/s end to end "
                             f"({row['model_images_per_s'] / torch_row['model_images_per_s']:.2f}x model only)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, not for RESULTS.md)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    iters = ["--warmup", "1", "--iters", "3"] if args.quick else ["--warmup", "3", "--iters", "20"]
    sys.path.insert(0, str(REPO))
    from instseg_deploy.bench.report import markdown

    with tempfile.TemporaryDirectory(prefix="instseg-results-") as tmp:
        work = Path(tmp)
        fp32 = work / "model.onnx"
        instseg("export", "--to", "onnx", "--config", str(CONFIG), "--weights", str(WEIGHTS), "--out", str(fp32))
        models = [fp32, *quantized_models(work, fp32)]
        large = bench(work, "large", models, "--size", "800x1333", *iters)
        small = bench(work, "small", models, "--batch", "1,2", "--threads", "1,2", *iters)
    machine = large["machine"]
    text = [
        "# Benchmark results",
        "",
        f"Regenerate on your machine (idle): `python benchmarks/run_benchmarks.py` (written {date.today()}).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, torch {machine['torch']}, "
        f"onnxruntime {machine['onnxruntime']}; {machine['platform']}.",
        "Model: the detectron2-trained R50-FPN fixture checkpoint (tests/data/detectron2/shapes_r50, 4 classes, "
        "thin widths); the same checkpoint in every row. ONNX rows run the `instseg export` graph.",
        "GFLOP/s = the model's conv/matmul FLOPs x model-only images/s; % peak = that over the float32 sgemm "
        "peak measured in the same run with the same thread count.",
        "",
        "## 800x1333 (COCO test size), batch 1, all cores",
        "",
        markdown(large),
        *ratio_lines(large),
        "",
        "## The model's own size (short side 320), batch and thread sweep",
        "",
        markdown(small),
        *ratio_lines(small),
        "",
        "## TensorRT",
        "",
        "| backend | result | command that measures it |",
        "|---|---|---|",
        "| TensorRT FP32 | not measured on this machine (no GPU, no TensorRT) | `instseg export --to trt --model model.onnx "
        "--out model_fp32.engine && instseg bench --backend trt --model model_fp32.engine --device cuda --size 800x1333` |",
        "| TensorRT FP16 | not measured on this machine (no GPU, no TensorRT) | `instseg export --to trt --model model.onnx "
        "--out model_fp16.engine --fp16 && instseg bench --backend trt --model model_fp16.engine --device cuda --size 800x1333` |",
        "| TensorRT INT8 | not measured on this machine (no GPU, no TensorRT) | `instseg export --to trt --model "
        "model.int8.onnx --out model_int8.engine --fp16 && instseg bench --backend trt --model model_int8.engine "
        "--device cuda --size 800x1333` |",
        "",
    ]
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
