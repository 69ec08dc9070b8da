"""The `instseg` command line."""

from __future__ import annotations

import sys

import typer

from instseg_deploy import __version__
from instseg_deploy.cli import bench, data, demo, doctor, evaluate, export, info, predict, quantize, serve, train
from instseg_deploy.cli.common import configure_logging, use_plain_flags

EXAMPLES = """
Examples:

  instseg demo --out demo_out

  instseg predict photo.jpg -c mask_rcnn_R_50_FPN_3x.yaml -w model_final_f10217.pkl --out pred/

  instseg eval -c config.yaml -w model_final.pth --coco-root datasets/coco MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.05

  instseg export --to onnx -c config.yaml -w model_final.pth --out model.onnx

  instseg bench --backend torch,ort,openvino -c config.yaml -w model_final.pth --size 800x1333

  instseg serve --model model.onnx        # then: instseg eval --backend triton --url 127.0.0.1:8000 ...
"""

app = typer.Typer(
    name="instseg",
    help="Mask R-CNN from detectron2 checkpoints to fast deployment (PyTorch, ONNX Runtime, OpenVINO, TensorRT).",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"instseg-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """Mask R-CNN from detectron2 checkpoints to fast deployment."""
    configure_logging()


for module in (demo, info, predict, evaluate, train, export, quantize, bench, serve, data, doctor):
    module.register(app)
use_plain_flags(app)


def main() -> None:
    # detectron2's demo.py spells trailing config overrides `--opts KEY VALUE ...`; here they simply trail.
    app(args=[word for word in sys.argv[1:] if word != "--opts"], prog_name="instseg")


if __name__ == "__main__":
    main()
