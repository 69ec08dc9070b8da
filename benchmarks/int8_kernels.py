"""What an INT8 QDQ file loses to the quantization itself, and what to the CPU's int8 kernels.

The same file is predicted three ways: by ONNX Runtime's int8 kernels, by OpenVINO, and as its exact
float simulation (ONNX Runtime with graph optimizations off: every DequantizeLinear feeds a float
Conv, so int8 values are multiplied and summed without any intermediate rounding or clamping). On a
CPU without VNNI, x86 int8 kernels multiply-add byte pairs into int16 (vpmaddubsw), which saturates
where VNNI's vpdpbusd sums in int32; the simulation shows what the file would give without that.
Two files with the same calibration: 8-bit weights (instseg quantize's default) and 7-bit weights
(--weight-bits 7, which no int16 pair sum of uint8 x int7 can overflow). Prints:

1. the FPN outputs' relative error (||a - b|| / ||b||, mean over --feature-images generated images) of
   each kernel against the file's simulation, and of the simulation against FP32: free of AP's noise;
2. COCO bbox/segm AP per row, each row's change against ORT FP32, the detection count and the seconds
   it took (images interleaved across rows: comparable within a table), on the fixture val set and
   on a generated set.

    python benchmarks/int8_kernels.py --work /tmp/int8_kernels --generated 300

Files (exports, calibration cache, the generated set) are kept in --work and reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instseg_deploy.quantize.qdq import WEIGHT_BITS

FPN_OUTPUTS = tuple(f"/model/backbone/fpn_output{level}/Conv_output_0" for level in (2, 3, 4, 5))  # P2..P5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def models(work: Path) -> tuple[Path, dict[int, Path]]:
    """The fixture model's FP32 export and {weight bits: INT8 QDQ file}, one calibration for all."""
    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.quantize.qdq import QuantizeSettings, quantize_int8
    from instseg_deploy.runtime.torch_model import load_model

    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "fixture.onnx"
    if not fp32.is_file():
        net, cfg = load_model(DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl")
        export_onnx(net, cfg, fp32)
    calib = work / "calib"
    if not (calib / "annotations.json").is_file():
        generate(calib, 64, seed=1)  # as openvino_parity.py calibrates
    int8 = {}
    for bits in WEIGHT_BITS:
        int8[bits] = work / f"fixture.int8.w{bits}.onnx"
        if not int8[bits].is_file():
            log(f"quantizing the fixture model (INT8 QDQ, {bits}-bit weights, 64 generated calibration images)")
            quantize_int8(fp32, int8[bits], calibration_images(images=calib / "images", num_images=64),
                          QuantizeSettings(weight_bits=bits), cache_path=work / "calibration.json")
    return fp32, int8


def with_fpn_outputs(path: Path, work: Path) -> Path:
    """A copy of ``path`` that also outputs the FPN levels (tensors float ops read already, so that
    exposing them changes no fusion)."""
    import onnx

    out = work / f"{path.stem}.fpn.onnx"
    if not out.is_file():
        model = onnx.load(str(path))
        model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                                  for name in FPN_OUTPUTS)
        onnx.save(model, str(out))
    return out


def fpn_runner(path: Path, how: str):
    """feeds -> [P2..P5] for ``how``: "ort" (ORT with all optimizations: its int8 kernels), "simulation"
    (ORT with none: float ops on dequantized values) or "openvino" (f32 for whatever is not INT8)."""
    import numpy as np

    from instseg_deploy.runtime.ort import SessionSettings, create_session

    if how == "openvino":
        from instseg_deploy.runtime.openvino import shared_core

        compiled = shared_core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                  "INFERENCE_NUM_THREADS": 2})
        request, outputs = compiled.create_infer_request(), [compiled.output(name) for name in FPN_OUTPUTS]
        return lambda feeds: [np.array(request.infer(feeds)[o]) for o in outputs]
    session = create_session(path, SessionSettings(threads=2, optimization="disable" if how == "simulation" else "all"))
    return lambda feeds: session.run(list(FPN_OUTPUTS), feeds)


def feature_error(work: Path, fp32: Path, int8: dict[int, Path], images: list[Path]) -> list[str]:
    """The FPN outputs' relative errors table."""
    import numpy as np

    from instseg_deploy.data.calibration import ImageCalibrationReader
    from instseg_deploy.model_file.metadata import preprocess_params
    from instseg_deploy.model_file.reader import read_model_file

    model_file = read_model_file(fp32)
    input_names = [i.name for i in model_file.graph.graph.input]
    feeds = list(ImageCalibrationReader(images, preprocess_params(model_file.metadata), input_names))

    def outputs(path: Path, how: str) -> list[list]:
        run = fpn_runner(with_fpn_outputs(path, work), how)
        return [run(f) for f in feeds]

    def error(candidate: list[list], reference: list[list]) -> list[float]:
        return np.mean([[np.linalg.norm(c - r) / np.linalg.norm(r) for c, r in zip(cs, rs)]
                        for cs, rs in zip(candidate, reference)], axis=0).tolist()

    reference = outputs(fp32, "ort")
    lines = [f"#### FPN outputs' relative error ({len(feeds)} generated images)", "",
             "| file | compared | P2 | P3 | P4 | P5 |", "|---|---|---|---|---|---|"]
    for bits, path in int8.items():
        simulated = outputs(path, "simulation")
        rows = [("float simulation vs ORT FP32", error(simulated, reference))]
        rows += [(f"{label} vs float simulation", error(outputs(path, how), simulated))
                 for label, how in (("ort int8 kernels", "ort"), ("openvino int8", "openvino"))]
        lines += [f"| w{bits} | {label} | " + " | ".join(f"{100 * e:.1f}%" for e in errors) + " |"
                  for label, errors in rows]
    return lines + [""]


def evaluate_set(name: str, images: Path, annotations: Path, fp32: Path, int8: dict[int, Path]) -> list[str]:
    from interleaved_eval import predict_interleaved

    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.runtime.factory import exported_model_predictor, load_predictor
    from instseg_deploy.runtime.ort import SessionSettings, load_ort_runner

    dataset = load_coco_dataset(images, annotations)
    # AP needs every detection: the models' own threshold
    predictors = {"ort fp32": load_predictor("ort", model=fp32, threads=2, score_thresh=None)}
    for bits, path in int8.items():
        simulated = load_ort_runner(path, SessionSettings(threads=2, optimization="disable"))
        predictors[f"w{bits}: float simulation"] = exported_model_predictor(simulated, path, None)
        predictors[f"w{bits}: ort int8 kernels"] = load_predictor("ort", model=path, threads=2, score_thresh=None)
        predictors[f"w{bits}: openvino int8"] = load_predictor("openvino", model=path, threads=2, score_thresh=None)
    run = predict_interleaved(predictors, dataset, name=name)
    detections, ap = run.detections, run.ap(dataset)
    lines = [f"#### {name} ({len(dataset.images)} images)", "",
             "| file: how it runs | bbox AP | segm AP | Δ bbox vs ORT FP32 | Δ segm | detections | s (interleaved) |",
             "|---|---|---|---|---|---|---|"]
    for label in predictors:
        lines.append(f"| {label} | {ap[label]['bbox']:.3f} | {ap[label]['segm']:.3f} | "
                     f"{ap[label]['bbox'] - ap['ort fp32']['bbox']:+.3f} | "
                     f"{ap[label]['segm'] - ap['ort fp32']['segm']:+.3f} | {len(detections[label])} | "
                     f"{run.seconds[label]:.1f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/int8_kernels"))
    parser.add_argument("--generated", type=int, default=300, help="Images in the generated set (0: none).")
    parser.add_argument("--feature-images", type=int, default=10, help="Generated images for the FPN errors.")
    args = parser.parse_args()
    from instseg_deploy.cpu_isa import cpu_isa
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA

    fp32, int8 = models(args.work)
    isa = cpu_isa()
    print(f"CPU: {isa.model} ({isa.summary})\n")
    generated = args.work / f"generated{args.generated}"
    if args.generated and not (generated / "annotations.json").is_file():
        generate(generated, args.generated, seed=7)  # openvino_parity.py's generated set
    feature_set = generated if args.generated else args.work / "calib"
    print("\n".join(feature_error(args.work, fp32, int8, sorted((feature_set / "images").glob("*"))[
        :args.feature_images])))
    val = DEMO_DATA / "shapes_val"
    print("\n".join(evaluate_set("fixture val set", val / "images", val / "annotations.json", fp32, int8)))
    if args.generated:
        print("\n".join(evaluate_set("generated set, seed 7", generated / "images", generated / "annotations.json",
                                     fp32, int8)))


if __name__ == "__main__":
    main()
