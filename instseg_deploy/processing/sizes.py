"""Sizes written as dimensions joined by 'x': '800x1333' (an image HxW), '1x3x800x1344' (a tensor shape)."""

from __future__ import annotations

from instseg_deploy.errors import InstsegError


def _split(text: str) -> tuple[int, ...] | None:
    """The integers of 'AxBx...', or None when a part is not an integer."""
    try:
        return tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        return None


def parse_dims(text: str, what: str) -> tuple[int, ...]:
    """'1x3x800x1344' -> (1, 3, 800, 1344); every dimension positive. ``what`` names the flag in errors."""
    dims = _split(text)
    if dims is None:
        raise InstsegError(f"{what} must be dimensions joined by 'x' like 1x3x800x1344, got {text!r}")
    if any(d < 1 for d in dims):
        raise InstsegError(f"{what} dimensions must be positive, got {text!r}")
    return dims


def parse_hw(text: str, what: str, minimum: int = 1) -> tuple[int, int]:
    """'800x1333' -> (800, 1333), each side at least ``minimum`` (and positive)."""
    dims = _split(text)
    if dims is None or len(dims) != 2:
        raise InstsegError(f"{what} must be HxW like 800x1344, got {text!r}")
    dims = parse_dims(text, what)
    if min(dims) < minimum:
        raise InstsegError(f"{what} {text} is too small (each side at least {minimum})")
    return dims  # type: ignore[return-value]
