"""Training progress shared between MONAI Label's training subprocess (writer) and the server (reader).

The subprocess writes one small JSON file atomically (at most twice a second, and at every evaluation and
phase change); the server reads it for ``/info`` ``train_stats`` and ``GET /train/`` and reconciles it with
MONAI Label's own record of the task, which knows when the subprocess was killed (``DELETE /train/``) or died.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Any

from anatpaste.train import TrainProgress

from .model_store import write_json_atomic

RUNNING, DONE, ERROR, STOPPED, INTERRUPTED = "RUNNING", "DONE", "ERROR", "STOPPED", "INTERRUPTED"
# MONAI Label task states (monailabel.utils.async_tasks.utils)
_TASK_ACTIVE = ("SUBMITTED", "RUNNING")


class StatsWriter:
    """Writes the progress of one training run (used inside the training subprocess)."""

    def __init__(self, path: str | os.PathLike, min_interval: float = 0.5, print_interval: float = 2.0) -> None:
        self.path = Path(path)
        self.min_interval = min_interval
        self.print_interval = print_interval
        self.data: dict[str, Any] = {}
        self._last_write = self._last_print = 0.0

    def start(self, **fields: Any) -> None:
        self.data = {
            "status": RUNNING,
            "outcome": None,
            "phase": "loading",
            "pid": os.getpid(),
            "started_at": time.time(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "step": 0,
            "total": None,
            "loss": None,
            "synthetic_auc": None,
            "best_synthetic_auc": None,
            "images_per_s": None,
            **fields,
        }
        self.write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.write()

    def progress(self, p: TrainProgress) -> None:
        """The core's progress callback."""
        phase_changed = p.phase != self.data.get("phase")
        self.data.update(
            phase=p.phase,
            step=p.step,
            total=p.total,
            images_per_s=round(p.images_per_s, 1),
            loss=None if p.loss != p.loss else round(p.loss, 5),  # NaN before the first loss is read
            best_synthetic_auc=p.best_synthetic_auc,
        )
        if p.synthetic_auc is not None:
            self.data["synthetic_auc"] = p.synthetic_auc
        now = time.monotonic()
        if (
            phase_changed
            or p.synthetic_auc is not None
            or p.step == p.total
            or now - self._last_write > self.min_interval
        ):
            self.write()
        if phase_changed or now - self._last_print > self.print_interval or p.step == p.total:
            self._last_print = now
            auc = self.data["synthetic_auc"]
            print(
                f"anatpaste-train {p.phase} step {p.step}/{p.total} loss {self.data['loss']} "
                f"synthetic_auc {'-' if auc is None else f'{auc:.3f}'}",
                flush=True,
            )

    def finish(self, outcome: str, **fields: Any) -> None:
        self.update(status=DONE, outcome=outcome, phase="done", finished_at=time.time(), **fields)

    def fail(self, err: BaseException) -> None:
        self.update(status=ERROR, outcome="failed", error=f"{type(err).__name__}: {err}", finished_at=time.time())

    def write(self) -> None:
        self._last_write = time.monotonic()
        write_json_atomic(self.path, self.data)


def read_stats(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _task_start(task: dict[str, Any]) -> float:
    try:  # MONAI Label stores local time at second resolution
        return _dt.datetime.strptime(task["start_ts"], "%Y-%m-%d %H:%M:%S").timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def reconcile(stats: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    """Combine the stats file with MONAI Label's latest training task record (None: no task this session).

    The task's status wins (it knows about kills); the file gives step / total / loss / AUC when it was
    written by that task's run (it is newer than the task's start).
    """
    out = dict(stats)
    if task is None:
        if out.get("status") == RUNNING and not _pid_alive(out.get("pid")):
            out.update(status=INTERRUPTED, outcome="failed")
        return out
    fresh = bool(stats) and float(stats.get("started_at", 0)) >= _task_start(task) - 1.0
    status = task.get("status")
    if not fresh:
        out = {
            "status": RUNNING if status in _TASK_ACTIVE else status,
            "outcome": None,
            "phase": "starting" if status in _TASK_ACTIVE else None,
            "step": 0,
            "total": None,
        }
        if status not in _TASK_ACTIVE and status != DONE:
            out["outcome"] = "failed"
            details = list(task.get("details") or [])
            out["error"] = details[-1] if details else None
        return out
    if status in _TASK_ACTIVE:
        out["status"] = RUNNING
    else:
        out["status"] = status
        if stats.get("status") == RUNNING:  # the run never finished its own record: killed or crashed
            out["outcome"] = "stopped" if status == STOPPED else "failed"
    return out
