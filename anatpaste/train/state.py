"""What a training run changes as it goes (network, optimiser, schedule, batch generator, history, best
evaluated weights), how it starts from a seed, and its resumable checkpoint."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from anatpaste.model import AnatPasteNet
from anatpaste.train.config import TrainConfig
from anatpaste.train.export import load_init_weights
from anatpaste.train.processes import Process


@dataclass
class Best:
    """The best label-free evaluation so far: its AUC, step and weights (on the CPU)."""

    auc: float = -math.inf
    step: int | None = None
    state: dict[str, torch.Tensor] | None = None


@dataclass
class RunState:
    """Everything a checkpoint holds, plus ``step_net``: ``net`` itself, or its data-parallel wrapper."""

    net: AnatPasteNet
    step_net: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    best: Best = field(default_factory=Best)
    last_loss: float = math.nan  # the last loss read from the device (not checkpointed)


def seeded_network(config: TrainConfig) -> AnatPasteNet:
    """A new network initialised from ``config.seed``, then ``config.init_weights`` loaded if given.

    nn.Module initialisation draws from torch's global CPU generator: it is seeded inside
    :func:`torch.random.fork_rng`, which gives the caller's global random state back afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(config.seed)
        net = AnatPasteNet(in_channels=1)
    if config.init_weights:
        load_init_weights(net, config.init_weights)
    return net


def batch_seed(config: TrainConfig, rank: int, step: int = 0) -> int:
    """Seed of a process's batch and paste draws: each rank its own, rank 0 the single-process stream."""
    return config.seed + 1_000_003 * rank + step


def new_run(config: TrainConfig, process: Process) -> RunState:
    """Step 0 of a run: the seeded network on the process's device, SGD with a cosine schedule, the generator."""
    dev = process.device
    net = seeded_network(config).to(dev).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes memory_format; torch's overloads omit it
    opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    gen = torch.Generator(device=dev).manual_seed(batch_seed(config, process.rank))
    step_net: torch.nn.Module = net
    if process.world > 1:
        step_net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    return RunState(net, step_net, opt, sched, gen)


def resume(run: RunState, path: Path, config: TrainConfig, process: Process) -> None:
    """Continue ``run`` from the checkpoint at ``path``, which must have been written with ``config``.

    Only rank 0's generator is checkpointed; the other ranks restart theirs from a seed of the step reached.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != config.to_dict():
        raise ValueError(f"checkpoint {path} was written with another configuration; remove it to restart")
    run.net.load_state_dict(state["net"])
    run.opt.load_state_dict(state["opt"])
    run.sched.load_state_dict(state["sched"])
    if process.leads:
        run.gen.set_state(state["gen"])
    else:
        run.gen.manual_seed(batch_seed(config, process.rank, state["step"]))
    run.step, run.history, run.train_seconds = state["step"], state["history"], state["train_seconds"]
    run.best = Best(state["best_auc"], state["best_step"], state["best_state"])


def save_checkpoint(run: RunState, path: Path, config: TrainConfig) -> None:
    """Write ``run`` at its current step to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": config.to_dict(),
            "net": run.net.state_dict(),
            "opt": run.opt.state_dict(),
            "sched": run.sched.state_dict(),
            "gen": run.gen.get_state(),
            "step": run.step,
            "history": run.history,
            "train_seconds": run.train_seconds,
            "best_auc": run.best.auc,
            "best_step": run.best.step,
            "best_state": run.best.state,
        },
        tmp,
    )
    os.replace(tmp, path)
