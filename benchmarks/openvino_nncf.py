"""INT8 for OpenVINO two ways: `instseg quantize`'s QDQ file against NNCF's post-training quantization of the
FP32 export, with the same calibration images, on accuracy and on speed (the choice issue 17 asks for).

NNCF (`pip install nncf`; not a dependency of instseg-deploy) quantizes the OpenVINO model directly and places
FakeQuantize where OpenVINO fuses it best, residual Adds included. For a like-for-like comparison it gets our
float parts as its ignored scope: everything outside the network stages (anchor decoding, NMS, RoIAlign, mask
pasting) and the sensitive prediction layers (quantize.stages). Variants: NNCF's default placement of the ResNet
stem, and the stem left float (the FakeQuantize between the stem's Relu and MaxPool is what OpenVINO's CPU plugin
mis-computes, see quantize.qdq_layout.float_pre_pool_activations); presets performance (symmetric activations)
and mixed (asymmetric activations).

1. AP of the fixture model on its val set and on 300 generated images (the files and sets of
   openvino_parity.py), every variant against OpenVINO f32, predicted interleaved per image.
2. Model-only latency of the R50-FPN-3x architecture (seeded weights; the files of openvino_speed.py) at
   800x1344, round-robin in one process, against ONNX Runtime FP32.

    python benchmarks/openvino_nncf.py --work /tmp/ov_parity --speed-work /tmp/bench_ov --runs 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

OURS = "openvino int8 (instseg quantize)"
NNCF_VARIANTS = {  # label: (preset, quantize the stem)
    "nncf performance": ("performance", True),
    "nncf performance, stem float": ("performance", False),
    "nncf mixed, stem float": ("mixed", False),
}
STEM = "bottom_up/stem/"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ignored_scope(nncf, quantize_stem: bool):
    """Our float parts as NNCF node-name patterns: outside every stage, the sensitive layers, maybe the stem."""
    from instseg_deploy.export.stage_names import STAGE_PREFIXES
    from instseg_deploy.quantize.stages import SENSITIVE_LAYERS

    prefixes = [prefix for group in STAGE_PREFIXES.values() for prefix in group]
    patterns = ["^(?!" + "|".join(map(re.escape, prefixes)) + ").*"]
    patterns += [f".*{re.escape(layer)}.*" for layer in SENSITIVE_LAYERS]
    if not quantize_stem:
        patterns.append(f".*{re.escape(STEM)}.*")
    return nncf.IgnoredScope(patterns=patterns, validate=False)


def nncf_int8(fp32: Path, calib: Path, num_images: int, out: Path, preset: str, quantize_stem: bool) -> Path:
    """NNCF's INT8 IR of ``fp32`` (reused when present), calibrated on the first ``num_images`` of ``calib``,
    with the export's metadata (precision int8) so that `--backend openvino` runs it."""
    if out.is_file():
        return out
    import nncf

    from instseg_deploy.data.calibration import calibration_images
    from instseg_deploy.model_file.metadata import FLOAT_PRE_POOL_KEY, METADATA_KEY
    from instseg_deploy.model_file.reader import read_model_file
    from instseg_deploy.quantize.calibration import reader_for_model
    from instseg_deploy.runtime.openvino import shared_core, write_openvino_model

    meta = read_model_file(fp32).metadata
    model = shared_core().read_model(str(fp32))
    reader = reader_for_model(meta, [port.get_any_name() for port in model.inputs],
                              calibration_images(images=calib / "images", num_images=num_images))
    samples = []
    while (feeds := reader.get_next()) is not None:
        samples.append(feeds)
    log(f"NNCF {preset}{'' if quantize_stem else ', stem float'}: {fp32.name}, {len(samples)} calibration images")
    start = time.perf_counter()
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is the Markdown report
        quantized = nncf.quantize(model, nncf.Dataset(samples), preset=getattr(nncf.QuantizationPreset,
                                                                               preset.upper()),
                                  subset_size=len(samples), ignored_scope=ignored_scope(nncf, quantize_stem))
    log(f"  {time.perf_counter() - start:.0f} s, "
        f"{sum(op.get_type_name() == 'FakeQuantize' for op in quantized.get_ops())} FakeQuantize")
    stem_convs = [] if quantize_stem else [op.get_friendly_name() for op in quantized.get_ops()
                                           if op.get_type_name() == "Convolution" and STEM in op.get_friendly_name()]
    meta = {**meta, "precision": "int8", "int8": {"tool": f"nncf {nncf.__version__}", "preset": preset,
                                                  "calibration_images": len(samples), FLOAT_PRE_POOL_KEY: stem_convs}}
    quantized.set_rt_info(json.dumps(meta), [METADATA_KEY])
    write_openvino_model(quantized, out)
    return out


def variants(work: Path, fp32: Path, int8: Path, calib: Path, num_images: int) -> dict[str, Path]:
    files = {OURS: int8}
    for label, (preset, quantize_stem) in NNCF_VARIANTS.items():
        name = f"{fp32.stem}.nncf_{preset}{'' if quantize_stem else '_stem_float'}.xml"
        files[label] = nncf_int8(fp32, calib, num_images, work / name, preset, quantize_stem)
    return files


def accuracy(name: str, images: Path, annotations: Path, fp32: Path, files: dict[str, Path]) -> None:
    from interleaved_eval import predict_interleaved

    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.runtime.factory import load_predictor

    dataset = load_coco_dataset(images, annotations)
    every = {"threads": 2, "score_thresh": None}  # AP needs every detection
    predictors = {"openvino f32": load_predictor("openvino", model=fp32, precision="f32", **every)}
    predictors.update({label: load_predictor("openvino", model=path, **every) for label, path in files.items()})
    run = predict_interleaved(predictors, dataset, name=name)
    ap = run.ap(dataset)
    base = ap["openvino f32"]
    print(f"#### {name} ({len(dataset.images)} images)\n\n| variant | bbox AP | segm AP | Δ bbox | Δ segm | "
          "detections |\n|---|---|---|---|---|---|")
    for label in predictors:
        print(f"| {label} | {ap[label]['bbox']:.3f} | {ap[label]['segm']:.3f} | "
              f"{ap[label]['bbox'] - base['bbox']:+.3f} | {ap[label]['segm'] - base['segm']:+.3f} | "
              f"{len(run.detections[label])} |")
    print(flush=True)


def speed(fp32: Path, files: dict[str, Path], runs: int) -> None:
    """Median model-only latency at 800x1344 (one synthetic image resized to 800x1333), round-robin."""
    from interleaved_eval import median_seconds_round_robin, print_latency_table

    from instseg_deploy.bench.inputs import generated_images, resized_copies
    from instseg_deploy.image_io import read_image
    from instseg_deploy.model_file.metadata import preprocess_params
    from instseg_deploy.processing.preprocess import preprocess
    from instseg_deploy.runtime.openvino import OpenVinoSettings, load_openvino_runner
    from instseg_deploy.runtime.ort import SessionSettings, load_ort_runner

    runners = {"ort fp32": load_ort_runner(fp32, SessionSettings(threads=2))}
    runners.update({label: load_openvino_runner(path, OpenVinoSettings("f32", 2)) for label, path in files.items()})
    with tempfile.TemporaryDirectory(prefix="nncf-speed-") as tmp:
        source = next(generated_images(Path(tmp) / "generated", 1, seed=3).glob("*.jpg"))
        (image_path,) = resized_copies([str(source)], Path(tmp) / "resized", 800, 1333)
        image = read_image(image_path)[0]
    batch = preprocess([image], preprocess_params(runners["ort fp32"].meta))
    median = median_seconds_round_robin({label: partial(runner.run, batch) for label, runner in runners.items()},
                                        runs)
    print_latency_table(f"{fp32.name}, model only, {'x'.join(map(str, batch.images.shape[2:]))}, median of {runs} "
                        "interleaved runs", median, "vs ORT FP32", lambda value: median["ort fp32"] / value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ov_parity"), help="openvino_parity.py's folder.")
    parser.add_argument("--generated", type=int, default=300, help="Images in the generated set (0: none).")
    parser.add_argument("--speed-work", type=Path, default=Path("/tmp/bench_ov"), help="openvino_speed.py's folder.")
    parser.add_argument("--runs", type=int, default=6, help="Timed runs of each variant (0: no speed section).")
    args = parser.parse_args()
    try:
        import nncf
    except ImportError:
        sys.exit("NNCF is not installed: pip install nncf")
    import openvino as ov
    from openvino_parity import models
    from openvino_speed import r50_models

    from instseg_deploy.cpu_isa import cpu_isa
    from instseg_deploy.data.synth import generate
    from instseg_deploy.demo_data import DEMO_DATA

    isa = cpu_isa()
    print(f"CPU: {isa.model} ({isa.summary}); openvino {ov.__version__.split('-')[0]}, nncf {nncf.__version__}\n")
    fp32, int8 = models(args.work)
    files = variants(args.work, fp32, int8, args.work / "calib", 64)
    val = DEMO_DATA / "shapes_val"
    accuracy("fixture val set", val / "images", val / "annotations.json", fp32, files)
    if args.generated:
        generated = args.work / f"generated{args.generated}"
        if not (generated / "annotations.json").is_file():
            generate(generated, args.generated, seed=7)
        accuracy("generated set, seed 7", generated / "images", generated / "annotations.json", fp32, files)
    if args.runs:
        r50, r50_int8 = r50_models(args.speed_work, 32)
        r50_files = variants(args.speed_work, r50, r50_int8, args.speed_work / "calib", 32)
        speed(r50, r50_files, args.runs)


if __name__ == "__main__":
    main()
