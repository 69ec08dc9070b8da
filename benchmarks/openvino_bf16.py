"""Where does OpenVINO bf16 lose accuracy? bf16 variants of the fixture model against OpenVINO f32.

Variants, all with OpenVINO's CPU plugin at INFERENCE_PRECISION_HINT bf16 unless named f32:
- "bf16, plugin's geometry": the plugin alone, which also rounds the poolers' box geometry to bf16;
- "bf16": as `--backend openvino --precision bf16` runs it (box geometry f32, runtime/openvino_bf16.py);
- "bf16, PART f32": that, with one part's layers (--parts: the RPN head, the mask head, the backbone)
  also kept f32, through OpenVINO's precision-conversion attribute written into an in-memory IR. The
  plugin honours it on convolutions; it drops it from fully connected layers (so the box head cannot
  be kept f32 this way), and marking the FPN's convolutions made its inference fail (openvino 2026.4.1).

For the fixture val set and --sets generated sets of --images images each (the size of set the -0.64
bbox AP report was measured on): COCO bbox/segm AP and their change against f32, the detection
count, and the share of f32's confident detections (score >= 0.5) each variant finds again (same
class, box IoU >= 0.99). Then, per variant, the spread of the AP changes over the generated sets.

    python benchmarks/openvino_bf16.py --work /tmp/ov_parity --sets 6

--speed MODEL.onnx instead times the model alone at 800x1344 (e.g. the R50-FPN-3x export that
openvino_speed.py writes): f32, the plugin's bf16 and ours, --runs runs each, interleaved.

Needs a CPU with native BF16 (AVX512-BF16 or AMX); the FP32 export is shared with openvino_parity.py.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import tempfile
from pathlib import Path

PARTS = {"rpn head": "/model/proposal_generator/rpn_head/", "mask head": "/model/mask_head/",
         "backbone": "/model/backbone/bottom_up/"}
F32, PLUGIN, OURS = "f32", "bf16, plugin's geometry", "bf16"
THREADS = 2
# OpenVINO's runtime attribute that keeps a node in its original precision, as an IR writes it.
KEEP_PRECISION = ('<rt_info><attribute name="DisablePrecisionConversion" version="0" value="dynamic:bf16,f16" />'
                  '</rt_info>')


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def keep_f32(core, model, prefix: str):
    """``model`` read back from an IR in which every node named ``prefix``... carries KEEP_PRECISION."""
    from instseg_deploy.runtime.openvino import write_openvino_model

    names = {op.get_friendly_name() for op in model.get_ops()
             if op.get_friendly_name().startswith(prefix) and op.get_type_name() not in ("Constant", "Parameter")}

    def mark(layer: re.Match) -> str:
        return layer.group(0) + KEEP_PRECISION if html.unescape(layer.group(1)) in names else layer.group(0)

    with tempfile.TemporaryDirectory() as folder:
        xml = Path(folder) / "model.xml"
        write_openvino_model(model, xml)
        xml.write_text(re.sub(r'<layer id="\d+" name="([^"]*)" type="(?!Result")[^"]*"[^>]*>', mark, xml.read_text()))
        return core.read_model(str(xml), str(xml.with_suffix(".bin")))


def variant(path: Path, precision: str, roi_geometry: str = "f32", part: str | None = None):
    """A predictor of ``path`` (every detection: the model's own threshold), compiled as ``--backend
    openvino`` compiles it; with ``part``, bf16 with that part's layers also kept f32."""
    from instseg_deploy.runtime.factory import exported_model_predictor
    from instseg_deploy.runtime.openvino import OpenVinoSettings, load_openvino_runner

    if part is None:
        settings = OpenVinoSettings(precision, THREADS, cache=False, roi_geometry=roi_geometry)
        return exported_model_predictor(load_openvino_runner(path, settings), path, None)
    from instseg_deploy.model_file.reader import read_model_file
    from instseg_deploy.runtime.openvino import HINTS, OpenVinoRunner, read_openvino_model, shared_core
    from instseg_deploy.runtime.openvino_bf16 import keep_roi_geometry_f32

    core, model_file = shared_core(), read_model_file(path)
    model = read_openvino_model(core, path, model_file.graph)
    keep_roi_geometry_f32(model)
    model = keep_f32(core, model, PARTS[part])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": THREADS,
                                                 "PERFORMANCE_HINT": HINTS["latency"]})
    return exported_model_predictor(OpenVinoRunner(compiled, model_file.metadata, "bf16"), path, None)


def evaluate_set(name: str, images: Path, annotations: Path, fp32: Path, parts: list[str]) -> dict[str, tuple]:
    """{variant: (Δ bbox AP, Δ segm AP)} against f32; prints the set's table."""
    from interleaved_eval import FoundAgain, predict_interleaved

    from instseg_deploy.data.coco import load_coco_dataset

    dataset = load_coco_dataset(images, annotations)
    predictors = {F32: variant(fp32, "f32"), PLUGIN: variant(fp32, "bf16", roi_geometry="bf16"),
                  OURS: variant(fp32, "bf16"), **{f"bf16, {p} f32": variant(fp32, "bf16", part=p) for p in parts}}
    found = FoundAgain(F32, predictors)
    run = predict_interleaved(predictors, dataset, on_image=found.add, name=name)
    ap = run.ap(dataset)
    deltas = {label: (ap[label]["bbox"] - ap[F32]["bbox"], ap[label]["segm"] - ap[F32]["segm"]) for label in predictors}
    print(f"#### {name} ({len(dataset.images)} images)\n\n| variant | bbox AP | segm AP | Δ bbox | Δ segm | "
          f"detections | f32's {found.confident} confident found again |\n|---|---|---|---|---|---|---|")
    for label in predictors:
        print(f"| {label} | {ap[label]['bbox']:.3f} | {ap[label]['segm']:.3f} | {deltas[label][0]:+.3f} | "
              f"{deltas[label][1]:+.3f} | {len(run.detections[label])} | "
              f"{found.percent(label):.1f}% |")
    print(flush=True)
    return deltas


def time_variants(path: Path, runs: int) -> None:
    """Median model-only latency of f32 and both bf16 variants at 800x1344, measured round-robin."""
    from functools import partial

    import numpy as np
    from interleaved_eval import median_seconds_round_robin, print_latency_table

    from instseg_deploy.processing.graph_io import IMAGE_SIZES, IMAGES

    variants = {F32: variant(path, "f32"), PLUGIN: variant(path, "bf16", roi_geometry="bf16"),
                OURS: variant(path, "bf16")}
    image = np.random.default_rng(0).normal(0, 50, (1, 3, 800, 1344)).astype(np.float32)
    feeds = {IMAGES: image, IMAGE_SIZES: np.array([[800, 1333]], np.int64)}
    median = median_seconds_round_robin({label: partial(predictor.runner.request.infer, feeds)
                                         for label, predictor in variants.items()}, runs, warmup=2)
    print_latency_table(f"{path.name}, model only, 800x1344, median of {runs} interleaved runs", median,
                        "vs bf16, plugin's geometry", lambda value: value / median[PLUGIN], digits=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ov_parity"))
    parser.add_argument("--sets", type=int, default=6, help="Generated sets (seeds 11, 12, ...).")
    parser.add_argument("--images", type=int, default=150, help="Images per generated set.")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"Parts kept f32 in turn, of: {', '.join(PARTS)} "
                                                                 "('' for none).")
    parser.add_argument("--speed", type=Path, help="Time this model's variants instead (see above).")
    parser.add_argument("--runs", type=int, default=12, help="--speed: runs of each variant.")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if unknown := [p for p in parts if p not in PARTS]:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    import openvino as ov
    from interleaved_eval import native_bf16
    from openvino_parity import models

    from instseg_deploy.cpu_isa import cpu_isa
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA

    if not native_bf16():
        sys.exit("this CPU has no native BF16: OpenVINO would run every variant as f32")
    isa = cpu_isa()
    print(f"CPU: {isa.model} ({isa.summary}); openvino {ov.__version__.split('-')[0]}\n")
    if args.speed is not None:
        time_variants(args.speed, args.runs)
        return
    fp32, _ = models(args.work)
    val = DEMO_DATA / "shapes_val"
    evaluate_set("fixture val set", val / "images", val / "annotations.json", fp32, parts)
    spread: dict[str, list] = {}
    for seed in range(11, 11 + args.sets):
        folder = args.work / f"generated{args.images}_seed{seed}"
        if not (folder / "annotations.json").is_file():
            generate(folder, args.images, seed=seed)
        deltas = evaluate_set(f"generated set, seed {seed}", folder / "images", folder / "annotations.json", fp32,
                              parts)
        for label, delta in deltas.items():
            spread.setdefault(label, []).append(delta)
    if spread:
        print(f"#### AP change against f32 over the {args.sets} generated sets\n\n"
              "| variant | Δ bbox min | Δ bbox max | max abs Δ bbox | Δ segm min | Δ segm max | max abs Δ segm |\n"
              "|---|---|---|---|---|---|---|")
        for label, values in spread.items():
            if label == F32:
                continue
            bbox, segm = [v[0] for v in values], [v[1] for v in values]
            print(f"| {label} | {min(bbox):+.3f} | {max(bbox):+.3f} | {max(map(abs, bbox)):.3f} | {min(segm):+.3f} | "
                  f"{max(segm):+.3f} | {max(map(abs, segm)):.3f} |")


if __name__ == "__main__":
    main()
