"""`instseg export`: the whole detector as one ONNX graph (OpenVINO IR and TensorRT engines build on it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from instseg_deploy.cli.common import (
    ConfigOption,
    WeightsOption,
    config_overrides,
    console,
    overrides_argument,
    user_errors,
)
from instseg_deploy.errors import InstsegError
from instseg_deploy.ops.roi_align_contract import OP_TYPE

EXAMPLES = """
Examples:

  instseg export --to onnx --config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \\
      --weights model_final_f10217.pkl --out model.onnx

  instseg export --to onnx -c output/config.yaml -w output/model_final.pth --out fixed.onnx \\
      --batch 1 --size 1344x1344 --masks pasted

  instseg export --to onnx -c config.yaml -w model_final.pkl --out model.onnx --class-names cat,dog,bird

  instseg export --to openvino --model model.onnx --out model.xml     (OpenVINO IR: model.xml + model.bin)

  instseg export --to openvino -c config.yaml -w model_final.pth --out ir/model.xml

  instseg export --to trt --model model.onnx --out model.engine --fp16

  instseg export --to trt -c config.yaml -w model_final.pth --out model.engine \\
      --batch 1:4:8 --size 320x320:800x1088:1344x1344

  instseg export --to trt --model model_int8.onnx --out model_int8.engine --fp16   (Q/DQ model from instseg quantize)

  instseg export --to trt --model model.onnx --out model_int8.engine --int8 --calib datasets/coco/train2017

  instseg export --to triton --model model.onnx --out model_repository   (python flavour: bundled server, CPU)

  instseg export --to triton --model model.engine --out repo --flavour native --max-batch 8 --instances 2
"""


@user_errors
def export(
    to: str = typer.Option("onnx", "--to", help="Target format: onnx, openvino (IR .xml + .bin), trt (a TensorRT "
                           "engine + .json sidecar), or triton (a Triton model repository for an exported --model)."),
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="--to openvino/trt: convert this exported .onnx "
                                         "instead of --config/--weights; --to triton: the exported .onnx, .xml or "
                                         ".engine to serve.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.onnx; .xml for --to openvino; .engine for "
                             "--to trt); a folder for --to triton.",
                             show_default=False),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 16 for half-pixel RoiAlign)."),
    batch: str = typer.Option("dynamic", "--batch", help="'dynamic' or a fixed batch size; --to trt also MIN:OPT:MAX "
                                                         "(default 1:1:8)."),
    size: str = typer.Option("dynamic", "--size", help="'dynamic' or a fixed padded input size HxW (multiples of 32); "
                                                       "--to trt also MIN:OPT:MAX, e.g. 320x320:800x1088:1344x1344."),
    masks: str = typer.Option("raw", "--masks", help="raw: 28x28 probabilities pasted on the host; "
                                                    "pasted: full-resolution masks inside the graph."),
    roi_align: Optional[str] = typer.Option(None, "--roi-align", help="onnx (default for --to onnx): standard RoiAlign "
                                            "ops per FPN level; plugin (default for --to trt): one "
                                            f"{OP_TYPE} node (TensorRT plugin).", show_default=False),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Simplify the graph with onnxslim."),
    fp16: bool = typer.Option(False, "--fp16", help="--to trt: let TensorRT use FP16 kernels."),
    int8: bool = typer.Option(False, "--int8", help="--to trt: INT8, from a Q/DQ model (instseg quantize) or with "
                                                   "--calib."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="--to trt --int8: folder of calibration images for "
                                         "TensorRT's own (implicit, deprecated) calibration of a float model.",
                                         show_default=False),
    min_shape: Optional[str] = typer.Option(None, "--min-shape", help="--to trt: smallest images input NxCxHxW "
                                            "(with --opt-shape and --max-shape, instead of --batch/--size).",
                                            show_default=False),
    opt_shape: Optional[str] = typer.Option(None, "--opt-shape", help="--to trt: the shape TensorRT tunes for.",
                                            show_default=False),
    max_shape: Optional[str] = typer.Option(None, "--max-shape", help="--to trt: largest images input NxCxHxW.",
                                            show_default=False),
    workspace: Optional[float] = typer.Option(None, "--workspace", help="--to trt: builder workspace limit in GiB "
                                              "(default: TensorRT's, the GPU's memory).", show_default=False),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="--to trt: timing cache file, read when "
                                                "present and updated (faster rebuilds).", show_default=False),
    plugin_lib: Optional[Path] = typer.Option(None, "--plugin-lib", help="--to trt: libinstseg_plugins.so (default: "
                                              "$INSTSEG_PLUGIN_LIB, then plugins/build/).", show_default=False),
    class_names: Optional[str] = typer.Option(None, "--class-names", help="Names stored in the exported file, over "
                                              "the checkpoint's: comma-separated or a file with one per line.",
                                              show_default=False),
    flavour: str = typer.Option("python", "--flavour", help="--to triton: python (the whole predictor in one "
                                "Python-backend model: what `instseg serve` runs) or native (the network as an "
                                "onnxruntime/tensorrt_plan/openvino model, pre/post-processing around it via BLS)."),
    name: str = typer.Option("instseg", "--name", help="--to triton: the served model's name."),
    max_batch: int = typer.Option(4, "--max-batch", help="--to triton: most requests one model call batches."),
    instances: int = typer.Option(1, "--instances", help="--to triton: model instances."),
    max_queue_delay_us: int = typer.Option(2000, "--max-queue-delay-us", help="--to triton: how long a request may "
                                           "wait for others to batch with."),
    gpu: bool = typer.Option(False, "--gpu", help="--to triton: instances on the GPU (KIND_GPU; default for an "
                             ".engine)."),
    precision: str = typer.Option("auto", "--precision", help="--to triton, python flavour of an OpenVINO "
                                  "model: f32, bf16 or auto, as `--backend openvino` takes it."),
    opts: Optional[list[str]] = overrides_argument(),
) -> None:
    """Export the whole detector (backbone, RPN with NMS, ROI heads, masks) to ONNX, OpenVINO IR, a TensorRT
    engine, or a Triton model repository."""
    from instseg_deploy.export.onnx_export import export_onnx, parse_batch, parse_size
    from instseg_deploy.runtime.torch_model import load_model

    overrides = config_overrides(opts)
    if overrides and model is not None:
        raise InstsegError("config overrides apply to an export from --config/--weights, not to --model (its "
                           "config is baked in)")
    names = _class_names_option(class_names, to, model)
    if to == "triton":
        from instseg_deploy.serving.triton.repository import RepositoryRequest, write_repository

        if model is None:
            raise InstsegError("--to triton serves an exported --model (.onnx, .xml or .engine): export it first")
        repository = write_repository(RepositoryRequest(model, out, name=name, flavour=flavour, max_batch=max_batch,
                                                        instances=instances, max_queue_delay_us=max_queue_delay_us,
                                                        kind="KIND_GPU" if gpu else None, precision=precision))
        Console().print(f"wrote Triton model repository {repository}/ ({flavour} flavour, model {name}; see its "
                        "README.md)")
        return
    if to == "trt":
        from instseg_deploy.cli.export_trt import export_trt
        from instseg_deploy.export.trt.engine_export import TrtExportRequest

        export_trt(TrtExportRequest(
            out=out, model=model, config=config, weights=weights, fp16=fp16, int8=int8, calib=calib, batch=batch,
            size=size, min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape, workspace_gib=workspace,
            timing_cache=timing_cache, plugin_lib=plugin_lib, opset=opset, masks=masks,
            roi_align=roi_align or "plugin", overrides=tuple(overrides)))
        return
    if to not in ("onnx", "openvino"):
        raise InstsegError(f"--to {to!r} is not supported (available: onnx, openvino, trt, triton)")
    trt_only = {"--fp16": fp16, "--int8": int8, "--calib": calib, "--min-shape": min_shape,
                "--opt-shape": opt_shape, "--max-shape": max_shape, "--workspace": workspace,
                "--timing-cache": timing_cache, "--plugin-lib": plugin_lib}
    given = [flag for flag, value in trt_only.items() if value not in (None, False)]
    if given:
        raise InstsegError(f"{', '.join(given)} only apply to --to trt")
    if to == "openvino":
        _export_openvino(out, model, config, weights, opset=opset, batch=batch, size=size, masks=masks,
                         simplify=simplify, roi_align=roi_align, overrides=overrides, class_names=names)
        return
    if model is not None:
        raise InstsegError("--model only applies to --to openvino and --to trt (--to onnx exports --weights)")
    net, cfg = load_model(config, weights, overrides=overrides, class_names=names)
    with console.status("tracing and exporting"):
        report = export_onnx(net, cfg, out, opset=opset, batch=parse_batch(batch), size=parse_size(size),
                             masks=masks, simplify=simplify, roi_align=roi_align or "onnx")
    simplified = f", simplified {report.nodes_before} -> {report.nodes_after} nodes" if report.simplified else \
        f", {report.nodes_after} nodes"
    Console().print(f"wrote {report.path} ({report.size_bytes / 2**20:.1f} MiB, opset {report.opset}{simplified})")


def _class_names_option(spec: Optional[str], to: str, model: Optional[Path]) -> Optional[tuple[str, ...]]:
    """--class-names read (counted against the model once it is loaded); only where a model is exported."""
    if spec is None:
        return None
    if to in ("trt", "triton") or model is not None:
        raise InstsegError("--class-names names the classes of an export from --config/--weights (--to onnx or "
                           "openvino); an exported --model keeps its names: export the ONNX with --class-names "
                           "first")
    from instseg_deploy.class_names import read_class_names

    return read_class_names(spec)


def _export_openvino(out: Path, model: Optional[Path], config: Optional[Path], weights: Optional[Path], *,
                     opset: int, batch: str, size: str, masks: str, simplify: bool, roi_align: Optional[str],
                     overrides: list[str], class_names: Optional[tuple[str, ...]] = None) -> None:
    """IR from ``model`` (an .onnx), or from --config/--weights through a temporary ONNX export."""
    import tempfile

    from instseg_deploy.export.onnx_export import export_onnx, parse_batch, parse_size
    from instseg_deploy.export.openvino_ir import export_openvino_ir
    from instseg_deploy.runtime.torch_model import load_model

    if (model is None) == (weights is None and config is None):
        raise InstsegError("--to openvino needs either --model model.onnx or --config/--weights (one of them)")
    if roi_align == "plugin":
        raise InstsegError("--roi-align plugin is TensorRT's; OpenVINO runs the standard-ops graph (--roi-align onnx)")
    with tempfile.TemporaryDirectory(prefix="instseg-ov-") as tmp:
        if model is None:
            net, cfg = load_model(config, weights, overrides=overrides, class_names=class_names)
            with console.status("tracing and exporting to ONNX"):
                model = export_onnx(net, cfg, Path(tmp) / "model.onnx", opset=opset, batch=parse_batch(batch),
                                    size=parse_size(size), masks=masks, simplify=simplify, roi_align="onnx").path
        with console.status("converting to OpenVINO IR"):
            report = export_openvino_ir(model, out)
    Console().print(f"wrote {report.xml} + {report.bin.name} ({report.size_bytes / 2**20:.1f} MiB, "
                    f"{report.nodes} OpenVINO ops, f32 weights)")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(export)
