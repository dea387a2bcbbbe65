"""MONAI Label trainer: self-supervised AnatPaste training on confirmed normals, published through the gate.

``POST /train/anatpaste`` makes MONAI Label run this task's ``__call__`` in a subprocess. One run:

1. collects the training normals: the datastore images reviewed ``"normal"`` plus the ``base_normals`` folder;
2. trains with :func:`anatpaste.train.train` (fine-tuning the published model unless ``init: scratch``),
   which refits the Gaussians and the threshold, into ``candidates/`` — never onto the published file;
3. runs the sanity gate (:mod:`.gate`) against the published model;
4. publishes the candidate as a new version (:meth:`.ModelStore.publish`: write, verify, rename) if it passed.

A run that is killed, crashes or fails the gate changes nothing that is published.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from anatpaste.data import find_images, load_image_set
from anatpaste.modelfile import load_model
from anatpaste.train import TrainConfig

from . import gate
from .config import TrainOptions
from .model_store import ModelStore
from .review import confirmed_normals
from .train_parallel import default_processes, run_training
from .train_stats import StatsWriter, read_stats, reconcile

logger = logging.getLogger(__name__)

STATS_FILE = "train_stats.json"
MIN_IMAGES = 4  # the core holds out 2 normals and trains on the rest


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
    ) -> None:
        super().__init__("AnatPaste self-supervised training on confirmed normals (+ base normals)")
        self.store = store
        self.defaults = defaults
        self.base_normals = base_normals
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

    def training_paths(self, datastore: Datastore) -> tuple[list[str], list[str], list[str]]:
        """(all image paths, confirmed-normal ids, base-normal paths); duplicates removed."""
        ids = confirmed_normals(datastore)
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
        image_size = opts.image_size or (int(parent_payload["preprocessing"]["image_size"]) if parent_payload else 256)
        init = str(parent.path) if (opts.init == "current" and parent) else None

        paths, confirmed_ids, base = self.training_paths(datastore)
        stats.update(
            total=opts.steps,
            new_confirmed_normals=len(confirmed_ids),
            n_base_normals=len(base),
            parent_version=parent.name if parent else None,
            image_size=image_size,
            device=device,
        )
        if len(paths) < MIN_IMAGES:
            raise TrainDataError(
                f"{len(paths)} normal images ({len(confirmed_ids)} confirmed, {len(base)} base); need at "
                f"least {MIN_IMAGES}: confirm more studies as normal or start the server with "
                "--conf base_normals DIR"
            )
        data = load_image_set(paths, image_size, progress=False)
        seconds = {"load": lap()}
        if len(data) < MIN_IMAGES:
            raise TrainDataError(f"only {len(data)} of {len(paths)} images could be read; need {MIN_IMAGES}")
        config = TrainConfig(
            image_size=image_size,
            steps=opts.steps,
            batch_size=opts.batch_size,
            lr=opts.lr,
            seed=opts.seed,
            eval_every=min(opts.eval_every, opts.steps),
            checkpoint_every=0,
            log_every=1 if device == "cpu" else 10,  # progress per step on CPU; fewer GPU syncs on CUDA
            init_weights=init,
        )
        candidate = self.store.new_candidate_path()
        stats.update(phase="train", n_images=len(data), n_skipped=len(data.skipped))
        processes = opts.processes or default_processes(device)
        stats.update(processes=processes)
        summary = run_training(
            config,
            data,
            candidate,
            device=device,
            processes=processes,
            stats=stats,
            data_summary={
                "confirmed_normals": confirmed_ids,
                "base_normals": str(self.base_normals or ""),
                "n_images": len(data),
                "n_skipped": len(data.skipped),
            },
        )

        seconds["train"] = lap()
        stats.update(phase="gate")
        current = self.store.current()  # may differ from parent if someone rolled back meanwhile
        verdict = gate.check(
            candidate,
            current.path if current else None,
            data,
            config,
            min_auc=opts.gate_min_auc,
            tolerance=opts.gate_tolerance,
        )
        seconds["gate"] = lap()
        logger.info(f"sanity gate: {verdict}; seconds: {seconds}")
        summary.pop("history", None)
        run = {
            "gate": verdict.to_dict(),
            "steps": summary["steps"],
            "selected_step": summary["selected_step"],
            "train_seconds": summary["train_seconds"],
            "threshold": summary["threshold"],
            "seconds": seconds,
        }
        if not verdict.passed:
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
        version = self.store.publish(candidate, origin="train", meta=meta, move=True)
        stats.finish("published", **run, published_version=version.name)
        logger.info(f"published {version.name}")
        return {"published_version": version.name, **run}
