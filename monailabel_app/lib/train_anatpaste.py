"""MONAI Label trainer: adapt the model to the site's confirmed normals, published through the gate.

``POST /train/anatpaste`` makes MONAI Label run this task's ``__call__`` in a subprocess. One run:

1. collects the site's normals: the datastore images reviewed ``"normal"`` plus the ``base_normals`` folder,
   less the reviewed normals held out for the acceptance set (:mod:`.acceptance`); abnormal reviews never;
2. builds a candidate in ``candidates/`` — never onto the published file — by the request's ``mode``:
   ``calibrate`` (:func:`anatpaste.adapt.calibrate`, seconds), ``adapt`` (the default,
   :func:`anatpaste.adapt.adapt`: the same code as ``anatpaste adapt``), ``finetune`` / ``scratch``
   (:func:`anatpaste.train.train` from the published model / from scratch);
3. runs the gate: the candidate must score sanely; ``finetune`` / ``scratch`` candidates must also keep the
   synthetic-anomaly AUC (:mod:`.gate`); every candidate must not be worse than the published model on the
   site's acceptance set when it has one (:mod:`.acceptance`);
4. publishes the candidate as a new version (:meth:`.ModelStore.publish`: write, verify, rename) if it passed.

A run that is killed, crashes or fails the gate changes nothing that is published.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from anatpaste.adapt import MIN_NORMALS, adapt, calibrate, ladder
from anatpaste.data import ImageSet, find_images, load_image_set
from anatpaste.model.file import load_model, save_model
from anatpaste.train import TrainConfig, TrainProgress

from . import acceptance, gate
from .config import TrainOptions
from .model_store import ModelStore
from .review import confirmed_normals
from .train_parallel import default_processes, run_training
from .train_stats import StatsWriter, read_stats, reconcile

logger = logging.getLogger(__name__)

STATS_FILE = "train_stats.json"
MIN_IMAGES = 4  # the core holds out 2 normals and trains on the rest


@dataclass
class CandidateRun:
    """What building one candidate needs: the request's options, the site's normals, where to write it."""

    mode: str
    opts: TrainOptions
    data: ImageSet
    candidate: Path
    device: str
    stats: StatsWriter
    data_summary: dict[str, Any]


class TrainDataError(ValueError):
    """Too few usable normal images to train on."""


class AnatPasteTrain(TrainTask):
    """Fine-tune (or train) AnatPaste on confirmed normals + base normals; publish through the sanity gate."""

    def __init__(
        self,
        store: ModelStore,
        defaults: TrainOptions,
        base_normals: Path | None = None,
        datastore: Datastore | None = None,
        replay_normals: Path | None = None,
    ) -> None:
        super().__init__("AnatPaste self-supervised training on confirmed normals (+ base normals)")
        self.store = store
        self.defaults = defaults
        self.base_normals = base_normals
        self.replay_normals = replay_normals
        self.datastore = datastore  # the server's, for stats(); __call__ gets the subprocess's own
        self.stats_path = store.root / STATS_FILE

    def config(self) -> dict[str, Any]:
        return self.defaults.to_dict()

    # ---- server side ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Progress of the running or last training, plus what is published and waiting."""
        from monailabel.utils.async_tasks.utils import tasks

        train_tasks = tasks("train")
        out = reconcile(read_stats(self.stats_path), train_tasks[-1] if train_tasks else None)
        current = self.store.current()
        out["current_version"] = current.name if current else None
        if self.datastore is not None:
            used = set(self.store.entry(current.name).get("confirmed_normals", [])) if current else set()
            out["new_confirmed_normals"] = len(set(confirmed_normals(self.datastore)) - used)
        return out

    # ---- training subprocess -------------------------------------------------------------------------

    def training_paths(
        self, datastore: Datastore, exclude: set[str] | None = None
    ) -> tuple[list[str], list[str], list[str]]:
        """(all image paths, confirmed-normal ids, base-normal paths); duplicates and ``exclude`` ids removed."""
        ids = [i for i in confirmed_normals(datastore) if i not in (exclude or set())]
        confirmed = [datastore.get_image_uri(i) for i in ids]
        base = [str(p) for p in find_images(self.base_normals)] if self.base_normals else []
        paths = list(dict.fromkeys(p for p in [*confirmed, *base] if p))
        return paths, ids, base

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        stats = StatsWriter(self.stats_path)
        stats.start(request={k: v for k, v in request.items() if k != "model"})
        try:
            result = self._run(request, datastore, stats)
        except BaseException as err:
            stats.fail(err)
            raise
        finally:
            self.store.clear_candidates()
        return result

    def _run(self, request: dict[str, Any], datastore: Datastore, stats: StatsWriter) -> dict[str, Any]:
        opts = TrainOptions.from_values(request, self.defaults)
        mode = opts.mode
        if mode == "finetune" and opts.init == "scratch":
            mode = "scratch"  # the older request field still means what it meant
        clock = [time.perf_counter()]

        def lap() -> float:
            clock.append(time.perf_counter())
            return round(clock[-1] - clock[-2], 2)

        device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cpu":
            torch.set_num_threads(opts.threads or max(1, (os.cpu_count() or 2) - 1))
        self.store.clear_candidates()
        parent = self.store.current()
        parent_payload = load_model(parent.path) if parent else None
        if mode in ("calibrate", "adapt", "finetune") and parent_payload is None:
            raise TrainDataError(f"mode {mode!r} needs a published model; use mode 'scratch'")
        image_size = opts.image_size or (int(parent_payload["preprocessing"]["image_size"]) if parent_payload else 256)
        if mode in ("calibrate", "adapt"):
            image_size = int(parent_payload["preprocessing"]["image_size"])  # the encoder's own input size

        accept = acceptance.acceptance_set(datastore)
        paths, confirmed_ids, base = self.training_paths(datastore, exclude=set(accept.normal_ids))
        minimum = MIN_NORMALS if mode in ("calibrate", "adapt") else MIN_IMAGES
        stats.update(
            mode=mode,
            total={"adapt": opts.adapt_steps * len(opts.recipe_names), "calibrate": 0}.get(mode, opts.steps),
            new_confirmed_normals=len(confirmed_ids),
            n_base_normals=len(base),
            parent_version=parent.name if parent else None,
            image_size=image_size,
            device=device,
            acceptance=accept.to_dict(),
        )
        if len(paths) < minimum:
            raise TrainDataError(
                f"{len(paths)} normal images ({len(confirmed_ids)} confirmed, {len(base)} base); mode {mode!r} needs "
                f"at least {minimum}: confirm more studies as normal or start the server with --conf base_normals DIR"
            )
        data = load_image_set(paths, image_size, progress=False)
        seconds = {"load": lap()}
        if len(data) < minimum:
            raise TrainDataError(f"only {len(data)} of {len(paths)} images could be read; need {minimum}")
        candidate = self.store.new_candidate_path()
        stats.update(phase="train" if mode != "calibrate" else "calibrate", n_images=len(data),
                     n_skipped=len(data.skipped))
        data_summary = {
            "confirmed_normals": confirmed_ids,
            "base_normals": str(self.base_normals or ""),
            "n_images": len(data),
            "n_skipped": len(data.skipped),
        }
        job = CandidateRun(mode, opts, data, candidate, device, stats, data_summary)
        if mode in ("calibrate", "adapt"):
            run = self._site_candidate(job, parent_payload)
        else:
            run = self._train_candidate(job, image_size, parent)
        seconds["train"] = lap()

        stats.update(phase="gate")
        current = self.store.current()  # may differ from parent if someone rolled back meanwhile
        verdict = run.pop("verdict")
        if verdict.passed:
            accepted = acceptance.check(str(candidate), str(current.path) if current else None, accept, datastore,
                                        tolerance=opts.gate_tolerance)
        else:
            accepted = acceptance.AcceptanceVerdict(True, "not evaluated (the sanity gate refused)", None, None)
        seconds["gate"] = lap()
        passed = verdict.passed and accepted.passed
        reason = verdict.reason if not verdict.passed else (accepted.reason if not accepted.passed else verdict.reason)
        gate_dict = {**verdict.to_dict(), "passed": passed, "reason": reason, "acceptance": accepted.to_dict()}
        logger.info(f"gate: {gate_dict}; seconds: {seconds}")
        run = {"mode": mode, "gate": gate_dict, **run, "seconds": seconds}
        if not passed:
            stats.finish("rejected", **run, published_version=None)
            return {"published_version": None, **run}
        meta = {
            "parent": parent.name if parent else None,
            "confirmed_normals": confirmed_ids,
            "n_images": len(data),
            "base_normals": str(self.base_normals or ""),
            "options": opts.to_dict(),
            **run,
        }
        version = self.store.publish(candidate, origin=mode, meta=meta, move=True)
        stats.finish("published", **run, published_version=version.name)
        logger.info(f"published {version.name}")
        return {"published_version": version.name, **run}

    def _site_candidate(self, job: CandidateRun, parent_payload: dict[str, Any]) -> dict[str, Any]:
        """``calibrate`` or ``adapt`` the published model on the site's normals into ``job.candidate``."""
        mode, opts, data, candidate, device, stats = job.mode, job.opts, job.data, job.candidate, job.device, job.stats
        data_summary = job.data_summary
        if mode == "calibrate":
            payload = calibrate(parent_payload, data, seed=opts.seed, summary=data_summary)
            chosen = None
        else:
            replay = None
            if self.replay_normals is not None:
                replay = load_image_set(find_images(self.replay_normals), data.images.shape[-1], progress=False)
            recipes = ladder(opts.recipe_names, steps=opts.adapt_steps, batch_size=opts.batch_size, seed=opts.seed)

            def progress(step: int, total: int, loss: float) -> None:
                stats.progress(TrainProgress(step, total, loss, 0.0))

            res = adapt(parent_payload, data, recipes=recipes, replay=replay, device=device, progress=progress,
                        summary=data_summary)
            payload, chosen = res.payload, res.chosen
            stats.update(adapt_check=res.check)
        save_model(payload, candidate)
        problem = gate.usable(candidate, data)
        n = len(data)
        if problem:
            reason = f"candidate unusable: {problem}"
        elif mode == "calibrate":
            reason = "calibrated on the site's normals"
        elif chosen == "calibrated":
            reason = "adapt: kept the calibrated encoder (no fine-tune beat it on the label-free lesion check)"
        else:
            reason = f"adapt: kept the fine-tuned encoder ({chosen} recipe, label-free lesion check)"
        verdict = gate.GateResult(problem is None, reason, None, None, n)
        thr = payload["threshold"]
        return {
            "verdict": verdict,
            "steps": opts.adapt_steps * len(opts.recipe_names) if mode == "adapt" else 0,
            "threshold": thr["value"],
            "expected_fpr": thr.get("expected_fpr"),
            "fpr_interval": thr.get("fpr_interval"),
            "n_seen_left_out": thr.get("n_seen_left_out", 0),
            "threshold_warning": thr.get("warning"),
            "adapt_chosen": chosen,
            "adapt_check": payload.get("adaptation", {}).get("check"),
        }

    def _train_candidate(self, job: CandidateRun, image_size: int, parent: Any) -> dict[str, Any]:
        """``finetune`` (from the published model) or ``scratch``: the core training loop, then the sanity gate."""
        mode, opts, data, candidate, device, stats = job.mode, job.opts, job.data, job.candidate, job.device, job.stats
        data_summary = job.data_summary
        config = TrainConfig(
            image_size=image_size,
            steps=opts.steps,
            batch_size=opts.batch_size,
            lr=opts.lr,
            seed=opts.seed,
            eval_every=min(opts.eval_every, opts.steps),
            checkpoint_every=0,
            log_every=1 if device == "cpu" else 10,  # progress per step on CPU; fewer GPU syncs on CUDA
            init_weights=str(parent.path) if (mode == "finetune" and parent) else None,
        )
        processes = opts.processes or default_processes(device)
        stats.update(processes=processes)
        summary = run_training(config, data, candidate, device=device, processes=processes, stats=stats,
                               data_summary=data_summary)
        current = self.store.current()
        verdict = gate.check(
            candidate,
            current.path if current else None,
            data,
            config,
            min_auc=opts.gate_min_auc,
            tolerance=opts.gate_tolerance,
        )
        return {
            "verdict": verdict,
            "steps": summary["steps"],
            "selected_step": summary["selected_step"],
            "train_seconds": summary["train_seconds"],
            "threshold": summary["threshold"],
        }
