"""Data-parallel evaluation under `accelerate launch` or `torchrun`: each rank computes a
share of the examples, every rank gathers all records, rank 0 writes the report.
"""

from __future__ import annotations

from typing import Any, TypeVar

from harness import env

T = TypeVar("T")


def world_size() -> int:
    """Processes in this run (1 without a launcher)."""
    return int(env.text("WORLD_SIZE") or "1")


def rank() -> int:
    """This process's rank (0 without a launcher)."""
    return int(env.text("RANK") or "0")


def local_rank() -> int:
    """This process's rank on its machine: its GPU index."""
    return int(env.text("LOCAL_RANK") or "0")


def is_main() -> bool:
    """Whether this process writes files and reports (rank 0)."""
    return rank() == 0


def init() -> None:
    """Join the process group the launcher set up (NCCL on GPUs, gloo on CPUs)."""
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        # NCCL builds its communicators at the first collective: do it now, not inside the
        # first task's timing.
        dist.barrier()


def gather(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank."""
    if world_size() <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if world_size() <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def default_device() -> str | None:
    """This rank's GPU under a launcher, else None (the usual default)."""
    if world_size() > 1:
        import torch

        return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    return None


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()
