"""ONNX Runtime vs OpenVINO (f32, bf16, INT8) on the CPU, measured interleaved in one run.

Three sections, all printed as Markdown on stdout (progress on stderr):

1. Model speed at 800x1333 (padded to 800x1344) of the R50-FPN-3x architecture with seeded weights, batch
   norms standardized so every backend's ROI heads run on a trained model's 1000 proposals and 100
   detections (bench.seeded; conv time does not depend on the weights): `instseg bench` rows for ORT FP32, ORT INT8,
   OpenVINO f32 / bf16 on the FP32 export and OpenVINO on the INT8 QDQ file, measured round-robin
   (--rounds, one process per row) so a busy machine slows every row alike.
2. The whole `eval` of the fixture model on its val set: for every image in turn, each backend
   predicts it (pre/post-processing included), so the per-backend totals are interleaved too; AP of
   every backend from the same predictions.
3. What a change of input shapes between two calls costs each runner on that set (model time of
   each image right after another image and right after itself).

After section 1 a table says how many proposals entered each row's box head and how many detections it
returned on a generated image (equal work is what makes the rows comparable).

    python benchmarks/openvino_speed.py --work /tmp/bench_ov --rounds 6 --threads 2

Model files are kept in --work and reused by the next run (delete the folder to rebuild).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
R50 = REPO / "configs" / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_3x.yaml"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def r50_models(work: Path, calib_images: int) -> tuple[Path, Path]:
    """(FP32 export, INT8 QDQ of it) of the R50-FPN-3x architecture with seeded weights whose batch norms are
    standardized on the first calibration image (bench.seeded: a trained model's 1000 proposals and 100
    detections on every backend)."""
    from instseg_deploy.bench.seeded import seeded_model_from_config
    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.data.synth import generate
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.quantize.qdq import quantize_int8

    work.mkdir(parents=True, exist_ok=True)
    # New names: files of the seeded weights before bench.seeded (r50.onnx) are not reused.
    fp32, int8 = work / "r50_seeded.onnx", work / "r50_seeded.int8.onnx"
    calib = work / "calib"
    if not (calib / "annotations.json").is_file():
        generate(calib, calib_images, seed=1)
    images = calibration_images(images=calib / "images", num_images=calib_images)
    if not fp32.is_file():
        log("exporting the R50-FPN-3x architecture (seeded weights, batch norms standardized)")
        export_onnx(*seeded_model_from_config(R50, images[0]), fp32)
    if not int8.is_file():
        log(f"quantizing (INT8 QDQ, {calib_images} calibration images)")
        quantize_int8(fp32, int8, images)
    return fp32, int8


def model_speed(fp32: Path, int8: Path, threads: int, rounds: int) -> str:
    from instseg_deploy.bench.report import markdown
    from instseg_deploy.bench.run import BenchRequest, run_bench

    request = BenchRequest(backends=("ort", "openvino"), models=(fp32, int8), size=(800, 1333), batches=(1,),
                           thread_counts=(threads,), warmup=1, iters=1, rounds=rounds, precisions=("f32", "bf16"))
    result = run_bench(request, on_message=log)
    rows = {row["label"]: row for row in result["rows"]}
    base = rows["ort fp32"]["model_ms"]["p50"]
    ratios = ", ".join(f"{label} {base / row['model_ms']['p50']:.2f}x" for label, row in rows.items())
    return markdown(result) + f"\n\nModel-only p50 speed-up over ORT FP32 (same run): {ratios}.\n"


def roi_workload(models: dict[str, Path], work: Path, threads: int) -> str:
    """Rows entering the box head (the proposals) and detections of every model-only row (file, backend,
    precision) on a generated image (seed 0, as the benchmark's) at 800x1333: the rows compare like with
    like only where every one does the same ROI work. Detections come from the row's own runner; the
    proposals from a copy of its graph that also outputs the box head's first layer (an extra output can
    change how that layer is fused, so the copy is not used for the detections)."""
    import dataclasses

    import cv2
    import onnx
    import onnxruntime as ort
    from interleaved_eval import native_bf16

    from instseg_deploy.bench.inputs import generated_images
    from instseg_deploy.model_file.metadata import preprocess_params
    from instseg_deploy.model_file.reader import read_model_file
    from instseg_deploy.processing.preprocess import preprocess
    from instseg_deploy.runtime.openvino import (
        OpenVinoSettings,
        load_openvino_runner,
        read_openvino_model,
        shared_core,
    )
    from instseg_deploy.runtime.openvino_bf16 import keep_roi_geometry_f32
    from instseg_deploy.runtime.ort import SessionSettings, load_ort_runner

    folder = work / "workload_image"
    images = folder / "images" if (folder / "images").is_dir() else generated_images(folder, 1)
    image = cv2.resize(cv2.imread(str(sorted(images.iterdir())[0])), (1333, 800), interpolation=cv2.INTER_LINEAR)
    core = shared_core()
    lines = ["| file | row | box head rows (proposals) | detections |", "|---|---|---|---|"]
    for label, path in models.items():
        model_file = read_model_file(path)
        params = dataclasses.replace(preprocess_params(model_file.metadata), min_size=800, max_size=1333)
        batch = preprocess([image], params)
        feeds = {"images": batch.images, "image_sizes": batch.image_sizes}
        graph = onnx.ModelProto()
        graph.CopyFrom(model_file.graph)  # the probe's copy; the runners read the file as it is
        fc1 = next(n for n in graph.graph.node if n.op_type == "Gemm").output[0]  # (proposals, FC_DIM)
        graph.graph.output.append(onnx.helper.make_tensor_value_info(fc1, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        probe = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        detections = load_ort_runner(path, SessionSettings(threads=threads)).run(batch)
        lines.append(f"| {label} | ort | {len(probe.run(None, feeds)[-1])} | {len(detections.boxes)} |")
        precisions = ["f32", "bf16"] if model_file.precision == "fp32" and native_bf16() else ["f32"]
        for precision in precisions:
            model = read_openvino_model(core, path, model_file.graph)
            if precision == "bf16":  # as the runner compiles it
                keep_roi_geometry_f32(model)
            model.add_outputs([fc1])
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
            port = next(o for o in compiled.outputs if fc1 in o.get_names())
            proposals = len(compiled.create_infer_request().infer(feeds)[port])
            runner = load_openvino_runner(path, OpenVinoSettings(precision=precision, threads=threads))
            row = precision if model_file.precision == "fp32" else model_file.precision  # the speed table's name
            lines.append(f"| {label} | openvino {row} | {proposals} | {len(runner.run(batch).boxes)} |")
    return "\n".join(lines) + "\n"


def fixture_predictors(threads: int, work: Path):
    """(the fixture val set, {label: predictor}) for ORT and OpenVINO on the fixture model's FP32 export and
    its INT8 QDQ file (benchmarks/openvino_parity.py makes both files); OpenVINO bf16 only where the CPU
    computes it."""
    from interleaved_eval import native_bf16
    from openvino_parity import models as fixture_models

    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.runtime.factory import load_predictor

    val = DEMO_DATA / "shapes_val"
    dataset = load_coco_dataset(val / "images", val / "annotations.json")
    fp32, int8 = fixture_models(work / "fixture")
    every = {"threads": threads, "score_thresh": None}  # AP needs every detection
    predictors = {"ort fp32": load_predictor("ort", model=fp32, **every),
                  "openvino f32": load_predictor("openvino", model=fp32, precision="f32", **every)}
    if native_bf16():
        predictors["openvino bf16"] = load_predictor("openvino", model=fp32, precision="bf16", **every)
    predictors["ort int8"] = load_predictor("ort", model=int8, **every)
    predictors["openvino int8"] = load_predictor("openvino", model=int8, **every)
    return dataset, predictors


def whole_eval(dataset, predictors: dict) -> str:
    """Every backend predicts each image in turn; totals and AP per backend."""
    from interleaved_eval import predict_interleaved

    run = predict_interleaved(predictors, dataset)
    ap, seconds = run.ap(dataset), run.seconds
    lines = ["| backend | eval s (100 images) | speed-up vs ORT | bbox AP | segm AP | detections |",
             "|---|---|---|---|---|---|"]
    for name in predictors:
        lines.append(f"| {name} | {seconds[name]:.1f} | {seconds['ort fp32'] / seconds[name]:.2f}x | "
                     f"{ap[name]['bbox']:.3f} | {ap[name]['segm']:.3f} | {len(run.detections[name])} |")
    return "\n".join(lines) + "\n"


def shape_switch(dataset, predictors: dict) -> str:
    """What a change of input shapes costs each runner: every image's model time right after another image
    (the previous one of the set, other runners in between) and right after itself, means over the set.
    The images' sizes differ, and so do the data-dependent sizes inside (proposals per FPN level,
    detections); one warm pass first, so every image size has been seen once."""
    import time

    from instseg_deploy.data.coco import read_dataset_image

    images = [read_dataset_image(r.path, r.id, r.height, r.width) for r in dataset.images]
    batches = {label: [p.preprocess_batch([image]) for image in images] for label, p in predictors.items()}
    log("shape changes: one warm pass per runner")
    for label, predictor in predictors.items():
        for batch in batches[label]:
            predictor.runner.run(batch)
    after_other, after_itself = dict.fromkeys(predictors, 0.0), dict.fromkeys(predictors, 0.0)
    for i in range(len(images)):
        if i % 50 == 0:
            log(f"shape changes: image {i + 1}/{len(images)}")
        for label, predictor in predictors.items():
            start = time.perf_counter()
            predictor.runner.run(batches[label][i])
            middle = time.perf_counter()
            predictor.runner.run(batches[label][i])
            after_other[label] += middle - start
            after_itself[label] += time.perf_counter() - middle
    n = len(images)
    lines = ["| backend | model ms after another image | after itself | cost of the change |", "|---|---|---|---|"]
    for label in predictors:
        lines.append(f"| {label} | {after_other[label] / n * 1e3:.1f} | {after_itself[label] / n * 1e3:.1f} | "
                     f"{(after_other[label] - after_itself[label]) / n * 1e3:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_ov"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--skip-r50", action="store_true", help="Only the fixture model's whole eval.")
    args = parser.parse_args()
    from instseg_deploy.cpu_isa import cpu_isa

    isa = cpu_isa()
    print(f"CPU: {isa.model} ({isa.summary}), {args.threads} threads\n")
    if not args.skip_r50:
        fp32, int8 = r50_models(args.work, args.calib_images)
        print("### R50-FPN-3x architecture, 800x1333, model only\n")
        print(model_speed(fp32, int8, args.threads, args.rounds))
        print("What each row's ROI heads ran on (a generated image at 800x1333):\n")
        print(roi_workload({fp32.name: fp32, int8.name: int8}, args.work, args.threads))
    dataset, predictors = fixture_predictors(args.threads, args.work)
    print("### Fixture model, whole eval on its val set (100 images), interleaved per image\n")
    print(whole_eval(dataset, predictors))
    print("### Fixture model: the cost of a change of input shapes, per image of its val set\n")
    print(shape_switch(dataset, predictors))


if __name__ == "__main__":
    main()
