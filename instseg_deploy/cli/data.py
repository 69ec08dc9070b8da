"""`instseg data`: datasets for demos, tests, training and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from instseg_deploy.cli.common import console, progress_bar, user_errors
from instseg_deploy.errors import InstsegError

data_app = typer.Typer(help="Datasets: generate a COCO-format synthetic instance-segmentation set.",
                       no_args_is_help=True)

EXAMPLES = """
Examples:

  instseg data synth --out shapes --images 200 --split train=0.8,val=0.2

  instseg data synth --out shapes_val --images 100 --seed 7
"""


def parse_splits(spec: Optional[str]) -> Optional[dict]:
    """'train=0.8,val=0.2' (fractions) or 'train=160,val=40' (counts)."""
    if not spec:
        return None
    splits = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if not name.strip() or not value.strip():
            raise InstsegError(f"--split takes name=fraction or name=count pairs, got {part!r}")
        try:
            splits[name.strip()] = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            raise InstsegError(f"--split value for {name!r} is not a number: {value!r}") from None
    return splits


@user_errors
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="New folder for images/ + annotations.json.", show_default=False),
    images: int = typer.Option(100, "--images", "-n", help="Number of images in total."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same dataset."),
    split: Optional[str] = typer.Option(None, "--split", help="e.g. train=0.8,val=0.2: one sub-folder per split.",
                                        show_default=False),
    min_side: int = typer.Option(256, "--min-side", help="Smallest image side."),
    max_side: int = typer.Option(512, "--max-side", help="Largest image side."),
    max_instances: int = typer.Option(8, "--max-instances", help="Most shapes per image."),
) -> None:
    """Generate shapes (disc, square, triangle, ring) on textured backgrounds, with occlusions;
    masks as polygons and RLE. Deterministic per seed."""
    from instseg_deploy.data.synth import generate

    with progress_bar() as progress:
        task = progress.add_task("synth", total=images, rate="")
        paths = generate(out, images, seed=seed, splits=parse_splits(split), image_size=(min_side, max_side),
                         max_instances=max_instances,
                         progress=lambda done, total: progress.update(task, completed=done))
    for name, path in paths.items():
        console.print(f"{name}: {path}", markup=False)


def register(app: typer.Typer) -> None:
    data_app.command(epilog=EXAMPLES)(synth)
    app.add_typer(data_app, name="data")
