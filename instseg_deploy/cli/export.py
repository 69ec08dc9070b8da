"""`instseg export`: the whole detector as one ONNX graph (TensorRT engines build on it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from instseg_deploy.cli.common import ConfigOption, WeightsOption, console, user_errors
from instseg_deploy.errors import InstsegError

EXAMPLES = """
Examples:

  instseg export --to onnx --config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \\
      --weights model_final_f10217.pkl --out model.onnx

  instseg export --to onnx -c output/config.yaml -w output/model_final.pth --out fixed.onnx --batch 1 --size 1344x1344 --masks pasted
"""


@user_errors
def export(
    to: str = typer.Option("onnx", "--to", help="Target format: onnx."),
    config: Optional[Path] = ConfigOption,
    weights: Optional[Path] = WeightsOption,
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.onnx).", show_default=False),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 16 for half-pixel RoiAlign)."),
    batch: str = typer.Option("dynamic", "--batch", help="'dynamic' or a fixed batch size."),
    size: str = typer.Option("dynamic", "--size", help="'dynamic' or a fixed padded input size HxW (multiples of 32)."),
    masks: str = typer.Option("raw", "--masks", help="raw: 28x28 probabilities pasted on the host; "
                                                    "pasted: full-resolution masks inside the graph."),
    roi_align: str = typer.Option("onnx", "--roi-align", help="onnx: standard RoiAlign ops per FPN level; "
                                                             "plugin: one InstsegMultilevelRoIAlign node (TensorRT plugin)."),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Simplify the graph with onnxslim."),
) -> None:
    """Export the whole detector (backbone, RPN with NMS, ROI heads, masks) to ONNX."""
    from instseg_deploy.export.onnx_export import export_onnx, parse_batch, parse_size
    from instseg_deploy.model_files import load_model

    if to != "onnx":
        raise InstsegError(f"--to {to!r} is not supported yet (available: onnx)")
    if weights is None:
        raise InstsegError("--weights is required")
    model, cfg = load_model(config, weights)
    with console.status("tracing and exporting"):
        report = export_onnx(model, cfg, out, opset=opset, batch=parse_batch(batch), size=parse_size(size),
                             masks=masks, simplify=simplify, roi_align=roi_align)
    simplified = f", simplified {report.nodes_before} -> {report.nodes_after} nodes" if report.simplified else \
        f", {report.nodes_after} nodes"
    Console().print(f"wrote {report.path} ({report.size_bytes / 2**20:.1f} MiB, opset {report.opset}{simplified})")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(export)
