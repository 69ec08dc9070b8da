"""Regenerate benchmarks/RESULTS.md for the machine this runs on.

    python benchmarks/run_benchmarks.py [--quick]

Writes RESULTS.md and results.json (the raw rows). When results.json already holds a run from
the same machine (same CPU, core count and library versions) with the same settings (--quick or not),
RESULTS.md also gets a run-to-run section: every row's median latency now and in that previous
run, so running the command twice measures its own reproducibility.

Same checkpoint everywhere: the detectron2-trained R50-FPN fixture (instseg_deploy/demo_data/shapes_r50).
Rows: torch eager vs ONNX Runtime FP32 (and INT8 / FP16 when `instseg quantize` is available) at
800x1333 and at 320x448 (the fixture model's own short side, 320), a batch/threads sweep at the small size.
Every image is resized to the section's size, so a row's latencies vary with the machine and the
number of detections, not with which image's aspect ratio came up.
Run it on an idle machine: it measures wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from instseg_deploy.demo_data import DEMO_DATA

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "detectron2"
CONFIG = DEMO_DATA / "shapes_r50" / "config.yaml"
WEIGHTS = DEMO_DATA / "shapes_r50" / "model_final.pkl"
CALIB = FIXTURE / "photos"
SECTION_INPUTS = {"large": "800x1333", "small": "320x448"}


# Measured by benchmarks/openvino_parity.py and openvino_speed.py (their own runs); kept here as text.
OPENVINO_SUMMARY = (
    "Measured by `benchmarks/openvino_parity.py` and `benchmarks/openvino_speed.py`: see "
    "[OPENVINO.md](OPENVINO.md). On this project's 2-core AMD EPYC (AVX-512, VNNI, BF16; no AMX): OpenVINO f32 "
    "matches ORT FP32 detection for detection (identical AP on the fixture val set and 300 generated images); "
    "bf16 within 0.2 AP (-0.16 / +0.09 and +0.13 / +0.09 bbox / segm; the poolers' box geometry is kept f32, "
    "which the CPU plugin alone rounds to bf16: 90% of f32's confident detections found again at box IoU >= 0.99 "
    "instead of 52-65%, `benchmarks/openvino_bf16.py`), so `--precision auto` runs bf16 on such CPUs (f32 on AMX "
    "CPUs until measured there); INT8 within 0.5 AP of f32 (+0.44 / -0.02 bbox / segm on the fixture val set) "
    "with its detection count within 0.3% of ORT's on the same file. R50-FPN-3x at 800x1333, model only, seeded "
    "weights with standardized batch norms (`bench.seeded`: every backend's ROI heads run on a trained model's "
    "1000 proposals and 100 detections), over ORT FP32, two interleaved runs: OpenVINO INT8 3.44x / 3.36x, bf16 "
    "2.33x / 2.20x, f32 1.24x / 1.18x, ORT INT8 1.84x / 1.76x (the previous seeded weights, whose FP32 rows ran "
    "their ROI heads on about 90 proposals where OpenVINO INT8 ran on 1000, gave INT8 2.50x-2.70x). Fixture "
    "model's whole eval: OpenVINO bf16 1.84x / 1.78x, INT8 1.83x / 1.66x, f32 1.30x / 1.26x. With VNNI the int8 "
    "kernels compute 8-bit weights without saturating (FPN features within 2.1% (ORT) and 5.1% (OpenVINO) of the "
    "INT8 file's exact float simulation, `benchmarks/int8_kernels.py`). INT8 tool, by measurement "
    "(`benchmarks/openvino_nncf.py`): NNCF's post-training quantization of the same export with the same "
    "calibration images runs 5-8% faster in OpenVINO but moves the fixture val set's bbox AP by +0.59 (mixed "
    "preset) or +1.07 (performance) where `instseg quantize`'s file moves it +0.44, and NNCF's own stem placement "
    "hits an OpenVINO mis-computation (-3.6 AP) unless the stem is left float: the QDQ file stays the INT8 path. "
    "On an AVX2-only EPYC (no AVX-512, no VNNI, no BF16): OpenVINO f32 again matches ORT FP32 detection for "
    "detection; R50-FPN-3x model only, standardized seeded weights, OpenVINO f32 1.01x-1.26x ORT FP32 (1.03x "
    "alternating in one process), INT8 1.78x-1.96x, ORT INT8 1.31x-1.38x; fixture eval f32 1.25x-1.29x, INT8 "
    "1.37x-1.43x. There the int8 kernels saturate 8-bit weights (int16 pair sums without VNNI: FPN features "
    "14-19% off the file's exact float simulation), which costs the generated set about 0.35 bbox AP (OpenVINO "
    "INT8 -0.50 where the file itself loses -0.17); `instseg quantize --weight-bits 7` brings the kernels back to "
    "the simulation (OpenVINO INT8 -0.25 / -0.18 bbox / segm)."
)


# Measured by benchmarks/end_to_end.py and `instseg bench --mask-format` (their own runs); kept here as text.
END_TO_END_SUMMARY = (
    "Measured by `benchmarks/end_to_end.py` and `instseg bench --mask-format rle|dense`: see "
    "[END_TO_END.md](END_TO_END.md). On this project's 2-core AMD EPYC (AVX-512, VNNI, BF16; no AMX), ORT FP32, "
    "fixture checkpoint at 800x1333 with 95 detections per image: host work (pre + post) is 2.6% of the end-to-end "
    "p50 with `rle` masks (pre 2.0 ms, post 5.4 ms) and 5.9% with `dense` (post 18.7 ms); `instseg eval` peaks at "
    "390-398 MB with `rle` whether an image has 2 or 100 detections (1066 MB with `dense` at 100). Overlapping host "
    "work with the model gives 1.05x images/s on these 2 cores (ORT already uses both). GPU pre/post not measured "
    "(no GPU lent)."
)

SERVING_SUMMARY = (
    "Measured by `benchmarks/triton_serving.py`: see [SERVING.md](SERVING.md). On this project's 2-core AMD EPYC (AVX"
    "-512, VNNI, BF16; no AMX), the fixture model served by the bundled Triton server (python flavour, ONNX Runtime F"
    "P32), loopback HTTP: all 3850 detections of the 100 val images matched one-to-one with in-process ONNX Runtime, "
    "AP identical (51.91 box / 46.20 mask); 16 clients x 50 requests: 0 failed, 0 answers differing from the single-c"
    "lient ones. 2 instances x 1 thread: 6.05 img/s at 1 client, 11.24 at 16, serving overhead -4.5% p50 at 1 client;"
    " 1 instance x 2 threads: 8.67 img/s at 1 client, 8.55 at 16 (no gain: it already fills both cores), overhead +9."
    "8%."
)


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


def bench(work: Path, name: str, models: list[Path], settings: dict, *extra: str) -> dict:
    out = work / f"{name}.json"
    args = ["bench", "--backend", "torch,ort", "--config", str(CONFIG), "--weights", str(WEIGHTS),
            "--json", str(out), "--size", settings["sizes"][name], "--warmup", str(settings["warmup"]),
            "--iters", str(settings["iters"]),
            "--rounds", str(settings["rounds"]), "--processes", str(settings["processes"]), *extra]
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


def comparable(a: dict, b: dict) -> bool:
    """Same machine (CPU, cores, library versions) and same measuring settings."""
    return (a.get("settings") == b.get("settings")
            and all(a["machine"].get(k) == b["machine"].get(k) for k in ("cpu", "cores", "torch", "onnxruntime")))


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
    speeds = []
    for sec in ("large", "small"):
        a, b = (statistics.median(run[sec]["machine_gflops_by_round"]) for run in (previous, current))
        speeds.append(f"{SECTION_INPUTS[sec]} section {a:.0f} -> {b:.0f} GFLOP/s ({100 * (b / a - 1):+.1f}%)")
    lines += ["", "The machine's own speed in the two runs, as the median of a small float32 sgemm measured after "
              "every round: " + "; ".join(speeds) + "."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, not for RESULTS.md)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--raw", type=Path, default=REPO / "benchmarks" / "results.json",
                        help="raw rows of the run; read first as the previous run to compare with")
    args = parser.parse_args()
    # One timed iteration per row and round, 64 rounds: each row's samples come from 64 moments spread over
    # the whole run, so a slow minute of a shared machine (its sgemm speed swings by +-25% within minutes)
    # moves no row's median alone. 64 is a whole number of passes over the 8 images at batch 1 and 2.
    # The rounds are split among 4 successive processes per row: each process's speed is a draw of its own.
    settings = {"sizes": SECTION_INPUTS, "warmup": 1 if args.quick else 2, "iters": 1,
                "rounds": 2 if args.quick else 64, "processes": 2 if args.quick else 4}
    sys.path.insert(0, str(REPO))
    from instseg_deploy.atomic import write_json, write_text
    from instseg_deploy.bench.report import markdown

    with tempfile.TemporaryDirectory(prefix="instseg-results-") as tmp:
        work = Path(tmp)
        fp32 = work / "model.onnx"
        instseg("export", "--to", "onnx", "--config", str(CONFIG), "--weights", str(WEIGHTS), "--out", str(fp32))
        models = [fp32, *quantized_models(work, fp32)]
        large = bench(work, "large", models, settings)
        small = bench(work, "small", models, settings, "--batch", "1,2", "--threads", "1,2")
    machine = large["machine"]
    current = {"written": datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine, "settings": settings,
               "large": large, "small": small}
    previous = json.loads(args.raw.read_text()) if args.raw.is_file() else None
    if previous and not comparable(previous, current):
        previous = None  # another machine or other settings: not a reproducibility check
    text = [
        "# Benchmark results",
        "",
        f"Regenerate on your machine (idle): `python benchmarks/run_benchmarks.py` (written {current['written']}).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, torch {machine['torch']}, "
        f"onnxruntime {machine['onnxruntime']}; {machine['platform']}.",
        "Model: the detectron2-trained R50-FPN fixture checkpoint (instseg_deploy/demo_data/shapes_r50, 4 classes, "
        "thin widths); the same checkpoint in every row. ONNX rows run the `instseg export` graph.",
        "GFLOP/s = the model's conv/matmul FLOPs x model-only images/s; % peak = that over the peak of the row's "
        "own precision (float32 sgemm; bf16 and int8 GEMMs through OpenVINO) measured in the same run with the "
        "same thread count.",
        f"Every row is measured in {settings['rounds']} rounds, round-robin over the rows, {settings['iters']} "
        f"timed iteration(s) per row and round, in {settings['processes']} successive processes per row (each "
        f"loaded and warmed up with {settings['warmup']} iteration(s), then kept for its share of the rounds); "
        f"the statistics pool the {settings['rounds'] * settings['iters']} "
        "samples. An iteration is one pass of preprocess + model + postprocess, timed whole (end to end) and "
        "around the model alone (model-only).",
        "",
        "## 800x1333 (COCO test size), batch 1, all cores",
        "",
        markdown(large),
        *ratio_lines(large),
        "",
        "## 320x448 (the model's own short side), batch and thread sweep",
        "",
        markdown(small),
        *ratio_lines(small),
        "",
        "## Run-to-run reproducibility",
        "",
        *(reproducibility_lines(previous, current) if previous else
          ["No earlier run of this command with these settings on this machine in results.json: run it again to "
           "fill this section."]),
        "",
        "## INT8 / FP16 at full R50-FPN width",
        "",
        "The fixture model above is thin; the INT8 speed-up of the real R50-FPN-3x architecture is measured by "
        "`benchmarks/quantize_speed.py`: see [INT8_R50.md](INT8_R50.md).",
        "",
        "## OpenVINO (f32, bf16, INT8)",
        "",
        OPENVINO_SUMMARY,
        "",
        "## End to end: host work, mask formats, memory",
        "",
        END_TO_END_SUMMARY,
        "",
        "## Serving (Triton Inference Server, loopback)",
        "",
        SERVING_SUMMARY,
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
        "| TensorRT FP32 | not measured on this machine (no GPU, no TensorRT) | "
        "`instseg export --to trt --model model.onnx --out model_fp32.engine && "
        "instseg bench --backend trt --model model_fp32.engine --device cuda --size 800x1333` |",
        "| TensorRT FP16 | not measured on this machine (no GPU, no TensorRT) | "
        "`instseg export --to trt --model model.onnx --out model_fp16.engine --fp16 && "
        "instseg bench --backend trt --model model_fp16.engine --device cuda --size 800x1333` |",
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
