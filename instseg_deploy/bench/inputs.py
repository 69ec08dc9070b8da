"""Benchmark inputs: the generated shapes set by default, optionally resized to a fixed size."""

from __future__ import annotations

from pathlib import Path

import cv2

from instseg_deploy.errors import InstsegError


def generated_images(folder: Path, count: int = 8, seed: int = 0) -> Path:
    """``count`` images of the synthetic shapes set (fixed seed, so every run sees the same images)."""
    from instseg_deploy.data.synth import generate

    generate(folder, count, seed=seed)
    return folder / "images"


def resized_copies(source: list[str], folder: Path, height: int, width: int) -> list[str]:
    """The images resized to exactly ``height`` x ``width`` (so the network sees that size)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, path in enumerate(source):
        image = cv2.imread(path)
        if image is None:
            raise InstsegError(f"cannot read benchmark image {path}")
        target = folder / f"{i:04d}.png"
        cv2.imwrite(str(target), cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))
        out.append(str(target))
    return out
