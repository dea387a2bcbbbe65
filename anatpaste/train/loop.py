"""The training loop: the whole normal set lives on the device; each step pastes a batch there and learns
original (class 0) vs pasted (class 1). Resumable from its checkpoint; ends by exporting a model file."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from anatpaste import __version__
from anatpaste.data import ImageSet
from anatpaste.model import AnatPasteNet
from anatpaste.model.file import save_model
from anatpaste.paste import AnatPaste
from anatpaste.precision import use_bf16
from anatpaste.preprocess import NORM_MEAN, NORM_STD
from anatpaste.score.features import extract
from anatpaste.train.config import TrainConfig
from anatpaste.train.export import build_payload, load_init_weights
from anatpaste.train.selection import classifier_auc, evaluation_sets, gaussian_auc, holdout_split
from anatpaste.train.step import pretext_step


@dataclass
class TrainProgress:
    """What a caller (progress bar, MONAI Label's train_stats) sees after each step."""

    step: int
    total: int
    loss: float
    images_per_s: float
    synthetic_auc: float | None = None
    best_synthetic_auc: float | None = None
    phase: str = "train"


ProgressCallback = Callable[[TrainProgress], None]
# Called at each evaluation with (step, encoder); its figures are stored in the history under "report".
# For benchmarks' step studies only: selection never reads them.
ReportCallback = Callable[[int, torch.nn.Module], dict[str, Any]]


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


def source_balanced_cdf(source: torch.Tensor | None) -> torch.Tensor | None:
    """Cumulative draw probabilities that give every source the same share (None: one source, uniform draws)."""
    if source is None or int(source.max()) == int(source.min()):
        return None
    weight = 1.0 / torch.bincount(source).double()[source]
    return (weight.cumsum(0) / weight.sum()).float()


def draw_batch(n: int, b: int, gen: torch.Generator, cdf: torch.Tensor | None) -> torch.Tensor:
    """``b`` image indices: uniform, or by inverse CDF (no ``torch.multinomial``: it syncs CUDA every call)."""
    if cdf is None:
        return torch.randint(0, n, (b,), device=gen.device, generator=gen)
    u = torch.rand(b, device=gen.device, generator=gen)
    return torch.searchsorted(cdf, u).clamp_max(n - 1)


def train(
    config: TrainConfig,
    data: ImageSet,
    output: str | os.PathLike,
    *,
    device: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    data_summary: dict[str, Any] | None = None,
    report: ReportCallback | None = None,
) -> dict[str, Any]:
    """Train, select label-free, fit the scorers and write the model file to ``output``.

    Args:
        config: training settings.
        data: normal images and lung masks at ``config.image_size``.
        output: model file to write (atomically).
        device: "cuda", "cpu", ...; default CUDA when available.
        checkpoint: resumable state file; if it exists and matches ``config`` the run continues from it.
        progress: called every ``config.log_every`` steps and after every evaluation.
        data_summary: stored in the model file (e.g. source folders, counts).
        report: called at each evaluation with ``(step, encoder)``; the dict it returns is stored in that
            evaluation's history entry under ``"report"`` (e.g. a benchmark's test AUC per step). Never used
            for selection.

    Under ``torchrun`` (several processes) ``config.batch_size`` is per process, the gradients are averaged
    across processes, and only rank 0 evaluates, checkpoints, reports progress and writes ``output``.

    Returns:
        A summary: steps, wall time, images/s, synthetic AUCs, selected step, output path.
    """
    if data.images.shape[-1] != config.image_size:
        raise ValueError(f"data is {data.images.shape[-1]} px but config.image_size is {config.image_size}")
    rank, world = distributed_rank()
    dev = pick_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if rank != 0:
        progress = None
    train_idx, hold_idx = holdout_split(data, config.holdout_fraction, config.seed)
    train_set, holdout = data.subset(train_idx), data.subset(hold_idx)

    torch.manual_seed(config.seed)  # the only global draw: nn.Module initialisation uses the global RNG
    net = AnatPasteNet(in_channels=1)
    if config.init_weights:
        load_init_weights(net, config.init_weights)
    net = net.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    # Each process draws its own batches and pastes; rank 0 keeps the single-process stream.
    gen = torch.Generator(device=dev).manual_seed(config.seed + 1_000_003 * rank)
    step_net: torch.nn.Module = net
    if world > 1:
        step_net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    paster = AnatPaste()

    images = train_set.images.to(dev)
    lungs = train_set.lungs.to(dev)
    cdf = source_balanced_cdf(train_set.source) if config.balance_sources else None
    cdf = cdf.to(dev) if cdf is not None else None
    bf16 = use_bf16(config.precision, dev)
    # Fixed label-free evaluation set: held-out normals and their pasted copies, plus a fitting subset.
    eval_fit, eval_pasted = evaluation_sets(train_set, holdout, config.seed)

    start_step, history, best = 0, [], {"auc": -math.inf, "step": None, "state": None}
    train_seconds = 0.0
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state["config"] != config.to_dict():
            raise ValueError(f"checkpoint {ckpt_path} was written with another configuration; remove it to restart")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if rank == 0:
            gen.set_state(state["gen"])
        else:  # only rank 0's stream is checkpointed; other ranks restart theirs deterministically
            gen.manual_seed(config.seed + 1_000_003 * rank + state["step"])
        start_step, history, train_seconds = state["step"], state["history"], state["train_seconds"]
        best = {"auc": state["best_auc"], "step": state["best_step"], "state": state["best_state"]}

    def evaluate(step: int) -> float:
        # Embed the evaluation images once; both AUCs read the same embeddings.
        sets = (eval_fit, holdout.images, eval_pasted)
        fit_emb, e0, e1 = (extract(net.encoder, x, NORM_MEAN, NORM_STD)[0] for x in sets)
        auc, clf_auc = gaussian_auc(fit_emb, e0, e1), classifier_auc(net, e0, e1)
        history.append({"step": step, "synthetic_auc": auc, "classifier_auc": clf_auc, "loss": last_loss})
        if report is not None:
            history[-1]["report"] = report(step, net.encoder)
        # Step 0 (the untrained network) is recorded as the baseline but never selected.
        if step > 0 and auc > best["auc"]:
            best.update(auc=auc, step=step, state=copy.deepcopy({k: v.cpu() for k, v in net.state_dict().items()}))
        return auc

    def save_checkpoint(step: int) -> None:
        if ckpt_path is None or rank != 0:
            return
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "config": config.to_dict(), "net": net.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "gen": gen.get_state(), "step": step, "history": history,
                "train_seconds": train_seconds, "best_auc": best["auc"], "best_step": best["step"],
                "best_state": best["state"],
            },
            tmp,
        )
        os.replace(tmp, ckpt_path)

    last_loss = float("nan")
    if config.eval_every and start_step == 0 and rank == 0:
        evaluate(0)
    net.train()
    labels = torch.cat([torch.zeros(config.batch_size), torch.ones(config.batch_size)]).long().to(dev)
    b = config.batch_size
    window_t, window_imgs = time.perf_counter(), 0
    for step in range(start_step + 1, config.steps + 1):
        t0 = time.perf_counter()
        idx = draw_batch(images.shape[0], b, gen, cdf)
        x = images[idx].float() / 255.0
        xp = paster(x, lungs[idx], generator=gen)
        loss = pretext_step(step_net, x, xp, labels, opt, sched, (NORM_MEAN, NORM_STD), bf16)
        is_eval = rank == 0 and bool(config.eval_every) and (step % config.eval_every == 0 or step == config.steps)
        log_now = is_eval or step % config.log_every == 0 or step == config.steps
        if log_now:
            # Reading the loss waits for the device (GPU work is asynchronous), so the step clock is honest
            # at every read-out; done only every log_every steps to keep the GPU queue full in between.
            last_loss = float(loss.detach())
        train_seconds += time.perf_counter() - t0
        window_imgs += 2 * b * world
        auc = evaluate(step) if is_eval else None
        if progress and log_now:
            rate = window_imgs / max(time.perf_counter() - window_t, 1e-9)
            progress(TrainProgress(step, config.steps, last_loss, rate, auc, best["auc"] if best["step"] else None))
        if auc is not None:
            window_t, window_imgs = time.perf_counter(), 0
        if ckpt_path and config.checkpoint_every and step % config.checkpoint_every == 0:
            save_checkpoint(step)

    if rank != 0:  # the other processes only contributed gradients
        dist.destroy_process_group()
        return {"rank": rank, "world_size": world, "steps": config.steps}
    if config.select == "synthetic-auc" and best["state"] is not None:
        net.load_state_dict(best["state"])
        selected = best["step"]
    else:
        selected = config.steps
    net = net.cpu().to(memory_format=torch.contiguous_format)
    if progress:
        progress(TrainProgress(config.steps, config.steps, last_loss, 0.0, None, best["auc"], phase="fitting"))
    run = {
        "steps": config.steps, "selected_step": selected, "train_seconds": round(train_seconds, 2),
        "images_per_s": round(2 * b * world * (config.steps - start_step) / max(train_seconds, 1e-9), 1),
        "world_size": world, "bf16": bf16,
        "history": history, "device": str(dev), "anatpaste_version": __version__,
        "torch_version": str(torch.__version__),
    }
    payload = build_payload(net.encoder, config, train_set, holdout, run, data_summary or {})
    save_model(payload, output)
    if ckpt_path and ckpt_path.is_file():
        save_checkpoint(config.steps)
    if world > 1:
        dist.destroy_process_group()
    return {**run, "output": str(output), "threshold": payload["threshold"]["value"]}
