"""The training loop: the whole normal set lives on the device; each step pastes a batch there and learns
original (class 0) vs pasted (class 1). Resumable from its checkpoint; ends by exporting a model file.

:func:`train` runs these steps in order: place the process (:mod:`~anatpaste.train.processes`), hold out
normals, start or resume the run (:mod:`~anatpaste.train.state`), train with label-free evaluations
(:mod:`~anatpaste.train.selection`), select the best evaluated step, export (:mod:`~anatpaste.train.export`).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from anatpaste import __version__
from anatpaste.data import ImageSet
from anatpaste.errors import ModelFileError
from anatpaste.model.file import load_model, save_model
from anatpaste.model.trained_on import with_trained_on
from anatpaste.train.batches import PastedBatches
from anatpaste.train.config import TrainConfig
from anatpaste.train.export import build_payload
from anatpaste.train.processes import Process, leave, this_process
from anatpaste.train.selection import LabelFreeCheck, holdout_split
from anatpaste.train.state import Best, RunState, new_run, resume, save_checkpoint
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
    Torch's global random state is left as it was: every draw comes from a seeded generator of the run's own.

    Returns:
        A summary: steps, wall time, images/s, synthetic AUCs, selected step, output path.
    """
    if data.images.shape[-1] != config.image_size:
        raise ValueError(f"data is {data.images.shape[-1]} px but config.image_size is {config.image_size}")
    process = this_process(device, config.precision)
    if not process.leads:
        progress = None
    train_idx, hold_idx = holdout_split(data, config.holdout_fraction, config.seed)
    train_set, holdout = data.subset(train_idx), data.subset(hold_idx)
    ckpt = Path(checkpoint) if checkpoint else None

    run = new_run(config, process)
    if ckpt and ckpt.is_file():
        resume(run, ckpt, config, process)
    start_step = run.step
    evaluate_at = partial(evaluate, run, LabelFreeCheck.of(train_set, holdout, config.seed, config.norm), report)
    if config.eval_every and start_step == 0 and process.leads:
        evaluate_at(0)
    batches = PastedBatches.on_device(train_set, process.device, config)
    run_steps(run, config, process, batches, evaluate_at, progress, ckpt)
    if not process.leads:  # the other processes only contributed gradients
        leave(process)
        return {"rank": process.rank, "world_size": process.world, "steps": config.steps}

    selected = select_step(run, config)
    if progress:
        progress(TrainProgress(config.steps, config.steps, run.last_loss, 0.0, None, run.best.auc, phase="fitting"))
    summary = run_summary(run, config, process, selected)
    payload = export_model(run, config, train_set, holdout, summary, data_summary or {}, output)
    if ckpt and ckpt.is_file():  # the finished run, with the selected weights
        save_checkpoint(run, ckpt, config)
    leave(process)
    return {**summary, "output": str(output), "threshold": payload["threshold"]["value"]}


def evaluate(run: RunState, check: LabelFreeCheck, report: ReportCallback | None, step: int) -> float:
    """Evaluate the network at ``step``: record it in the history and keep its weights if it is the best so
    far (step 0, the untrained network, is recorded as the baseline but never kept). Returns its AUC."""
    auc, clf_auc = check(run.net)
    run.history.append({"step": step, "synthetic_auc": auc, "classifier_auc": clf_auc, "loss": run.last_loss})
    if report is not None:
        run.history[-1]["report"] = report(step, run.net.encoder)
    if step > 0 and auc > run.best.auc:
        run.best = Best(auc, step, copy.deepcopy({k: v.cpu() for k, v in run.net.state_dict().items()}))
    return auc


class Throughput:
    """Training images per second since the last evaluation (an evaluation's time is not training time)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.since, self.images = time.perf_counter(), 0

    def add(self, images: int) -> None:
        self.images += images

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.since, 1e-9)


def run_steps(
    run: RunState,
    config: TrainConfig,
    process: Process,
    batches: PastedBatches,
    evaluate_at: Callable[[int], float],
    progress: ProgressCallback | None,
    checkpoint: Path | None,
) -> None:
    """Steps ``run.step + 1`` to ``config.steps``: draw and paste a batch, learn it, and when due read the loss,
    evaluate (rank 0), report progress and checkpoint (rank 0)."""
    run.net.train()
    b = config.batch_size
    labels = torch.cat([torch.zeros(b), torch.ones(b)]).long().to(process.device)
    window = Throughput()
    for step in range(run.step + 1, config.steps + 1):
        t0 = time.perf_counter()
        x, xp = batches.draw(run.gen)
        loss = pretext_step(run.step_net, x, xp, labels, run.opt, run.sched, config.norm, process.bf16)
        run.step = step
        last = step == config.steps
        is_eval = process.leads and bool(config.eval_every) and (step % config.eval_every == 0 or last)
        log_now = is_eval or step % config.log_every == 0 or last
        if log_now:
            # Reading the loss waits for the device (GPU work is asynchronous), so the step clock is honest
            # at every read-out; done only every log_every steps to keep the GPU queue full in between.
            run.last_loss = float(loss.detach())
        run.train_seconds += time.perf_counter() - t0
        window.add(2 * b * process.world)
        auc = evaluate_at(step) if is_eval else None
        if progress and log_now:
            best = run.best.auc if run.best.step else None
            progress(TrainProgress(step, config.steps, run.last_loss, window.rate(), auc, best))
        if auc is not None:
            window.restart()
        if checkpoint and process.leads and config.checkpoint_every and step % config.checkpoint_every == 0:
            save_checkpoint(run, checkpoint, config)


def select_step(run: RunState, config: TrainConfig) -> int:
    """Load the weights the model file is made of into ``run.net`` and return their step: the best evaluated
    step for ``select="synthetic-auc"`` (when there was an evaluation), else the last one."""
    if config.select == "synthetic-auc" and run.best.state is not None and run.best.step is not None:
        run.net.load_state_dict(run.best.state)
        return run.best.step
    return config.steps


def export_model(
    run: RunState,
    config: TrainConfig,
    train_set: ImageSet,
    holdout: ImageSet,
    summary: dict[str, Any],
    data_summary: dict[str, Any],
    output: str | os.PathLike,
) -> dict[str, Any]:
    """Fit the scorers with the selected network (moved to the CPU) and write the model file atomically."""
    run.net.cpu().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # Module.to takes memory_format; torch's overloads omit it
    payload = build_payload(run.net.encoder, config, train_set, holdout, summary, data_summary)
    payload = with_trained_on(payload, train_set.images, parent=init_payload(config.init_weights))
    save_model(payload, output)
    return payload


def init_payload(init_weights: str | None) -> dict[str, Any] | None:
    """The model file the run started from (its encoder saw that file's training normals), else None."""
    if not init_weights:
        return None
    try:
        return load_model(init_weights)
    except ModelFileError:  # a torchvision state dict: it never saw a radiograph
        return None


def run_summary(run: RunState, config: TrainConfig, process: Process, selected: int) -> dict[str, Any]:
    """The run as the model file records it (``training``), with the throughput of the whole run.

    ``train_seconds`` is restored from the checkpoint, so the images are those of every step, not only of the
    steps run in this call (re-running a finished run to re-export it would otherwise record 0 images/s).
    """
    images = 2 * config.batch_size * process.world * config.steps
    return {
        "steps": config.steps,
        "selected_step": selected,
        "train_seconds": round(run.train_seconds, 2),
        "images_per_s": round(images / max(run.train_seconds, 1e-9), 1),
        "world_size": process.world,
        "bf16": process.bf16,
        "history": run.history,
        "device": str(process.device),
        "anatpaste_version": __version__,
        "torch_version": str(torch.__version__),
    }
