"""Run :func:`anatpaste.train.train` in one process, or data-parallel in several (one per visible GPU).

MONAI Label runs the trainer in a subprocess of its own; with more than one GPU that subprocess spawns one
worker per GPU that joins a process group (NCCL) the way ``torchrun`` would, so the core's DDP path is
used unchanged. On CPUs the same path runs with Gloo (used by the tests).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from anatpaste.data import ImageSet
from anatpaste.model.file import load_model
from anatpaste.train import TrainConfig, train

from .train_stats import StatsWriter, read_stats


def default_processes(device: str) -> int:
    """One process per visible GPU for ``cuda``; one process otherwise (or for a named ``cuda:N``)."""
    return torch.cuda.device_count() if device == "cuda" and torch.cuda.device_count() > 1 else 1


def run_training(
    config: TrainConfig,
    data: ImageSet,
    output: Path,
    *,
    device: str,
    processes: int,
    stats: StatsWriter,
    data_summary: dict[str, Any],
) -> dict[str, Any]:
    """Train (in ``processes`` processes) and return the run summary of the model file written to ``output``."""
    if processes <= 1:
        return train(config, data, output, device=device, progress=stats.progress, data_summary=data_summary)
    port = _free_port()
    mp.spawn(_worker, args=(processes, port, config, data, str(output), device, stats, data_summary),
             nprocs=processes, join=True)
    stats.data.update(read_stats(stats.path))  # rank 0 wrote the progress; keep it when this process writes next
    payload = load_model(output)  # rank 0 wrote it; the summary travels inside it
    run = payload["training"]
    return {**{k: run[k] for k in ("steps", "selected_step", "train_seconds", "images_per_s", "history")},
            "world_size": processes, "output": str(output), "threshold": payload["threshold"]["value"]}


def _worker(rank: int, world: int, port: int, config: TrainConfig, data: ImageSet, output: str, device: str,
            stats: StatsWriter, data_summary: dict[str, Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or world) // world))
    train(config, data, output, device=device, progress=stats.progress if rank == 0 else None,
          data_summary=data_summary)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
