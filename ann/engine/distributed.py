"""Where a training process runs: its rank, the world size and its device (torchrun's
environment, or one process), and the lock on the run's output folder that rank 0 holds."""

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ann.errors import AnnError, TrainingError
from ann.lock import RunLock

__all__ = [
    "Context",
    "device_type",
    "distributed_context",
    "finish",
    "output_lock",
    "shared_result",
]


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among world_size processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def device_type(device: str) -> str:
    """'cuda' or 'cpu' for train.device (auto: CUDA when present)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def distributed_context(device: str) -> Context:
    """Rank, world size and device from torchrun's environment (one process otherwise)."""
    world_size, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = device_type(device)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("train.device is 'cuda' but no CUDA device is available.")
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return Context(rank, world_size, where)


def shared_result(ctx: Context, step: Callable[[], object]) -> None:
    """Run `step` on rank 0 only; under torchrun every rank learns whether it failed. A user
    error there (AnnError) stops every rank with a TrainingError of the same message."""
    error = None
    if ctx.main:
        try:
            step()
        except AnnError as err:
            error = str(err)
    if ctx.world_size > 1:
        shared = [error]
        dist.broadcast_object_list(shared, src=0)
        error = shared[0]
    if error is not None:
        raise TrainingError(error)


@contextlib.contextmanager
def output_lock(out: Path, ctx: Context) -> Iterator[None]:
    """Rank 0 holds the lock of the run folder `out` (ann.lock); under torchrun the other ranks
    learn whether it got it. A second run on the same folder stops with a TrainingError that
    names the first."""
    lock = RunLock(out) if ctx.main else None
    shared_result(ctx, lock.acquire if lock is not None else lambda: None)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def finish() -> None:
    """Wait for every rank, then leave the process group (if there is one)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
