"""The `instseg` command line."""

from __future__ import annotations

import typer

from instseg_deploy import __version__
from instseg_deploy.cli import bench, data, demo, doctor, evaluate, export, info, predict, quantize, train
from instseg_deploy.cli.common import configure_logging

app = typer.Typer(
    name="instseg",
    help="Mask R-CNN from detectron2 checkpoints to fast deployment (PyTorch, ONNX Runtime, TensorRT).",
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


for module in (demo, info, predict, evaluate, train, export, quantize, bench, data, doctor):
    module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
