"""OpenVINO vs ONNX Runtime accuracy on the fixture model: the parity numbers of the OpenVINO issue.

For each dataset (the fixture val set, and a generated set), every backend predicts every image:
ORT FP32, OpenVINO f32 and bf16 on the FP32 export (bf16 as --backend openvino runs it, with the
poolers' box geometry f32, and as the CPU plugin alone runs it; only where the CPU computes bf16),
ORT and OpenVINO on an INT8 QDQ file made with `instseg quantize`'s code. Prints per backend: COCO
bbox/segm AP, the AP change against its reference, the detection count; for OpenVINO f32 the share
of ORT's detections matched one to one (same class, box IoU >= 0.99, |score diff| <= 1e-3); for bf16
the share of OpenVINO f32's confident detections (score >= 0.5) it finds again (same class, box IoU
>= 0.99).

    python benchmarks/openvino_parity.py --work /tmp/ov_parity --generated 300

Files (exports, the generated set) are kept in --work and reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PLUGIN_BF16 = "openvino bf16, plugin's geometry"  # the poolers' box geometry rounded to bf16 as well
BF16_ROWS = ("openvino bf16", PLUGIN_BF16)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def models(work: Path) -> tuple[Path, Path]:
    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.quantize.qdq import quantize_int8
    from instseg_deploy.runtime.torch_model import load_model

    work.mkdir(parents=True, exist_ok=True)
    fp32, int8 = work / "fixture.onnx", work / "fixture.int8.onnx"
    if not fp32.is_file():
        net, cfg = load_model(DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl")
        export_onnx(net, cfg, fp32)
    if not int8.is_file():
        calib = work / "calib"
        if not (calib / "annotations.json").is_file():
            generate(calib, 64, seed=1)
        log("quantizing the fixture model (INT8 QDQ, 64 generated calibration images)")
        quantize_int8(fp32, int8, calibration_images(images=calib / "images", num_images=64))
    return fp32, int8


def evaluate_set(name: str, images: Path, annotations: Path, fp32: Path, int8: Path, bf16: bool) -> list[str]:
    """The set's table; ``bf16``: with the bf16 rows (only where the CPU computes bf16)."""
    from interleaved_eval import CONFIDENT_SCORE, SAME_BOX_IOU, FoundAgain, predict_interleaved

    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.evaluation.parity import match_detections
    from instseg_deploy.runtime.factory import exported_model_predictor, load_predictor
    from instseg_deploy.runtime.openvino import OpenVinoSettings, load_openvino_runner

    dataset = load_coco_dataset(images, annotations)
    backends = {"ort fp32": ("ort", fp32, {}), "openvino f32": ("openvino", fp32, {"precision": "f32"}),
                "openvino bf16": ("openvino", fp32, {"precision": "bf16"}), "ort int8": ("ort", int8, {}),
                "openvino int8": ("openvino", int8, {})}
    if not bf16:
        del backends["openvino bf16"]
    # AP and matching need every detection: the models' own threshold
    predictors = {label: load_predictor(b, model=m, threads=2, score_thresh=None, **kw)
                  for label, (b, m, kw) in backends.items()}
    if bf16:
        plugin_bf16 = load_openvino_runner(fp32, OpenVinoSettings("bf16", 2, roi_geometry="bf16"))
        predictors[PLUGIN_BF16] = exported_model_predictor(plugin_bf16, fp32, None)
    counts = {"matched": 0, "total": 0}
    found = FoundAgain("openvino f32", BF16_ROWS if bf16 else ())

    def match(results: dict) -> None:
        report = match_detections(results["ort fp32"], results["openvino f32"])
        counts["matched"] += report.matched
        counts["total"] += max(report.num_reference, report.num_candidate)
        found.add(results)

    run = predict_interleaved(predictors, dataset, on_image=match, name=name)
    detections, ap = run.detections, run.ap(dataset)
    matched, total = counts["matched"], counts["total"]
    reference = {"openvino f32": "ort fp32", "openvino bf16": "openvino f32", PLUGIN_BF16: "openvino f32",
                 "ort int8": "ort fp32", "openvino int8": "openvino f32"}
    lines = [f"#### {name} ({len(dataset.images)} images)", "",
             "| backend | bbox AP | segm AP | vs | Δ bbox | Δ segm | detections |", "|---|---|---|---|---|---|---|"]
    for label in predictors:
        ref = reference.get(label)
        delta = (f"{ref} | {ap[label]['bbox'] - ap[ref]['bbox']:+.3f} | {ap[label]['segm'] - ap[ref]['segm']:+.3f}"
                 if ref else "- | - | -")
        lines.append(f"| {label} | {ap[label]['bbox']:.3f} | {ap[label]['segm']:.3f} | {delta} | "
                     f"{len(detections[label])} |")
    count_ort, count_ov = len(detections["ort int8"]), len(detections["openvino int8"])
    lines += ["", f"OpenVINO f32 vs ORT FP32: {matched}/{total} detections matched one to one "
              f"({100 * matched / max(total, 1):.2f}%). INT8 file: OpenVINO {count_ov} vs ORT {count_ort} detections "
              f"({100 * (count_ov - count_ort) / max(count_ort, 1):+.1f}%)."]
    if bf16:
        lines.append(f"OpenVINO f32's {found.confident} detections scoring >= {CONFIDENT_SCORE} found again by bf16 "
                     f"(same class, box IoU >= {SAME_BOX_IOU}): "
                     + ", ".join(f"{label} {found.percent(label):.1f}%" for label in BF16_ROWS) + ".")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ov_parity"))
    parser.add_argument("--generated", type=int, default=300, help="Images in the generated set (0: none).")
    args = parser.parse_args()
    from interleaved_eval import native_bf16

    from instseg_deploy.cpu_isa import cpu_isa
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA

    fp32, int8 = models(args.work)
    isa, bf16 = cpu_isa(), native_bf16()
    print(f"CPU: {isa.model} ({isa.summary})\n")
    if not bf16:
        print("No bf16 rows: OpenVINO computes no bf16 on this CPU (they would run f32).\n")
    val = DEMO_DATA / "shapes_val"
    print("\n".join(evaluate_set("fixture val set", val / "images", val / "annotations.json", fp32, int8, bf16)))
    if args.generated:
        generated = args.work / f"generated{args.generated}"
        if not (generated / "annotations.json").is_file():
            generate(generated, args.generated, seed=7)
        print("\n".join(evaluate_set("generated set, seed 7", generated / "images", generated / "annotations.json",
                                     fp32, int8, bf16)))


if __name__ == "__main__":
    main()
