"""Regenerate benchmarks/RESULTS.md for the machine this runs on.

    python benchmarks/run_benchmarks.py [--quick]

Writes RESULTS.md and results.json (the raw rows). When results.json already holds a run from
the same machine (same CPU, core count and library versions) and of the same kind (--quick or not),
RESULTS.md also gets a run-to-run section: every row's median latency now and in that previous
run, so running the command twice measures its own reproducibility.

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
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "detectron2"
CONFIG = FIXTURE / "shapes_r50" / "config.yaml"
WEIGHTS = FIXTURE / "shapes_r50" / "model_final.pkl"
CALIB = FIXTURE / "photos"
SECTION_INPUTS = {"large": "800x1333", "small": "short side 320"}


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


def _row_key(section: str, row: dict) -> tuple:
    return section, row["label"], row["batch"], row["threads"]


def same_machine(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("cpu", "cores", "torch", "onnxruntime"))


def reproducibility_lines(previous: dict, current: dict) -> list[str]:
    """Per row: end-to-end and model-only p50 of the previous run and this one, and the change."""
    before = {_row_key(sec, r): r for sec in ("large", "small") for r in previous[sec]["rows"]}
    lines = [f"Previous run: {previous['written']}; this run: {current['written']}. Change = this / previous - 1.", "",
             "| input | backend | batch | threads | e2e p50 before | e2e p50 now | change | model p50 before | "
             "model p50 now | change |", "|---|---|---|---|---|---|---|---|---|---|"]
    changes = []
    for sec in ("large", "small"):
        for row in current[sec]["rows"]:
            old = before.get(_row_key(sec, row))
            if old is None:
                continue
            cells = [SECTION_INPUTS[sec], row["label"], str(row["batch"]), str(row["threads"])]
            for key in ("end_to_end_ms", "model_ms"):
                a, b = old[key]["p50"], row[key]["p50"]
                changes.append(b / a - 1)
                cells += [f"{a:.1f}", f"{b:.1f}", f"{100 * (b / a - 1):+.1f}%"]
            lines.append("| " + " | ".join(cells) + " |")
    if changes:
        worst = max(changes, key=abs)
        lines += ["", f"Largest change of a median between the two runs: **{100 * worst:+.1f}%** "
                      f"({len(changes)} medians compared; {sum(abs(c) <= 0.10 for c in changes)} within 10%)."]
    # The machine's own speed in each run: a shared VM's sgemm moves too, whatever the benchmark does.
    peaks = [f"{SECTION_INPUTS[sec]} section {previous[sec]['peak_gflops_per_s']:.0f} -> "
             f"{current[sec]['peak_gflops_per_s']:.0f} GFLOP/s "
             f"({100 * (current[sec]['peak_gflops_per_s'] / previous[sec]['peak_gflops_per_s'] - 1):+.1f}%)"
             for sec in ("large", "small")]
    lines += ["", "The machine's float32 sgemm peak, measured at the start of each section of each run: "
              + "; ".join(peaks) + "."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, not for RESULTS.md)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--raw", type=Path, default=REPO / "benchmarks" / "results.json",
                        help="raw rows of the run; read first as the previous run to compare with")
    args = parser.parse_args()
    # 5 interleaved rounds per row (fresh processes): a row's samples are spread over the whole run, so
    # a slow minute of a shared machine (its sgemm speed swings by +-25% within minutes) moves no row's median alone
    warmup, timed, rounds = (1, 3, 1) if args.quick else (2, 4, 5)
    iters = ["--warmup", str(warmup), "--iters", str(timed), "--rounds", str(rounds)]
    sys.path.insert(0, str(REPO))
    from instseg_deploy.atomic import write_json, write_text
    from instseg_deploy.bench.report import markdown

    with tempfile.TemporaryDirectory(prefix="instseg-results-") as tmp:
        work = Path(tmp)
        fp32 = work / "model.onnx"
        instseg("export", "--to", "onnx", "--config", str(CONFIG), "--weights", str(WEIGHTS), "--out", str(fp32))
        models = [fp32, *quantized_models(work, fp32)]
        large = bench(work, "large", models, "--size", "800x1333", *iters)
        small = bench(work, "small", models, "--batch", "1,2", "--threads", "1,2", *iters)
    machine = large["machine"]
    current = {"written": datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine, "quick": args.quick,
               "large": large, "small": small}
    previous = json.loads(args.raw.read_text()) if args.raw.is_file() else None
    if previous and (previous.get("quick") != args.quick or not same_machine(previous["machine"], machine)):
        previous = None  # another machine or another iteration count: not a reproducibility check
    text = [
        "# Benchmark results",
        "",
        f"Regenerate on your machine (idle): `python benchmarks/run_benchmarks.py` (written {current['written']}).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, torch {machine['torch']}, "
        f"onnxruntime {machine['onnxruntime']}; {machine['platform']}.",
        "Model: the detectron2-trained R50-FPN fixture checkpoint (tests/data/detectron2/shapes_r50, 4 classes, "
        "thin widths); the same checkpoint in every row. ONNX rows run the `instseg export` graph.",
        "GFLOP/s = the model's conv/matmul FLOPs x model-only images/s; % peak = that over the float32 sgemm "
        "peak measured in the same run with the same thread count.",
        f"Every row is measured in {rounds} round(s), round-robin over the rows, each round a fresh process with "
        f"{warmup} warm-up and {timed} timed iterations; the statistics pool the {rounds * timed} samples.",
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
        "## Run-to-run reproducibility",
        "",
        *(reproducibility_lines(previous, current) if previous else
          ["No earlier run of this command on this machine in results.json: run it again to fill this section."]),
        "",
        "## INT8 / FP16 at full R50-FPN width",
        "",
        "The fixture model above is thin; the INT8 speed-up of the real R50-FPN-3x architecture is measured by "
        "`benchmarks/quantize_speed.py`: see [INT8_R50.md](INT8_R50.md).",
        "",
        "## GPU (torch CUDA, our RoIAlign CUDA kernel)",
        "",
        "Measured on a lent NVIDIA H200 (no TensorRT there): [GPU_H200.md](GPU_H200.md). R50-FPN-3x at 800x1333, "
        "torch CUDA: 16 ms model-only, 29 ms end to end per image at batch 1; the fused RoIAlign kernel is "
        "bit-identical to torchvision's CUDA op in float32 and takes about half its time.",
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
    write_text(args.out, "\n".join(text))
    write_json(args.raw, current)
    print(f"wrote {args.out} and {args.raw}")


if __name__ == "__main__":
    main()
