"""torchrun support: shard work across processes and gather results on rank 0."""

from __future__ import annotations

import os
from typing import Any


def init_from_env(backend: str) -> tuple[int, int]:
    """(rank, world size); joins the process group (``backend``: gloo or nccl) when launched by
    torchrun with > 1 process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def gather_lists(items: list[Any], world_size: int) -> list[Any] | None:
    """Concatenate every rank's list on rank 0 (None on other ranks)."""
    if world_size <= 1:
        return items
    import torch.distributed as dist

    gathered: list[list[Any]] | None = [None] * world_size if dist.get_rank() == 0 else None  # type: ignore[list-item]
    dist.gather_object(items, gathered, dst=0)
    if gathered is None:
        return None
    return [x for part in gathered for x in part]


def finish(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
