"""Where a training process runs: alone, or one of several under ``torchrun`` (data parallel)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from anatpaste.precision import use_bf16


@dataclass(frozen=True)
class Process:
    """This process's rank among ``world`` processes, its device and whether it computes in bf16."""

    rank: int
    world: int
    device: torch.device
    bf16: bool

    @property
    def leads(self) -> bool:
        """Rank 0 evaluates, checkpoints, reports progress and writes the model file."""
        return self.rank == 0


def distributed_rank() -> tuple[int, int]:
    """(rank, world size): (0, 1) alone; under ``torchrun`` with WORLD_SIZE > 1 the process group is joined
    (NCCL on GPUs, Gloo on CPUs) and every process trains on its own random batches (data parallel)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def this_process(device: str | None, precision: str) -> Process:
    """Join the process group if there is one; the device is ``device`` (default CUDA when available), under
    ``torchrun`` on GPUs the local rank's."""
    rank, world = distributed_rank()
    dev = pick_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return Process(rank, world, dev, use_bf16(precision, dev))


def leave(process: Process) -> None:
    """Leave the process group joined by :func:`this_process` (nothing to do alone)."""
    if process.world > 1:
        dist.destroy_process_group()
