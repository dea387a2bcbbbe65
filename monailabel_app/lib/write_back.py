"""``--conf write_back sr,seg,map``: results into the DICOMweb archive by STOW-RS (docs/dicom-write-back.md).

After the worklist scoring, each image scored by the published model without error gets the requested objects of
:mod:`anatpaste.report` in its own study; after a reviewer's verdict, a reviewer SR (with ``sr``). A ledger
file beside the app (shared by the server and MONAI Label's scoring subprocess, under a file lock) records what
was written, so the same model version never writes a second copy for an image, and a new version writes a new
report (its UIDs differ too, :mod:`anatpaste.report.uids`). A failed write is retried (``retries`` times, then
at the next scoring), logged, never raised into scoring, and counted in ``GET /info/`` ``write_back``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydicom
from filelock import FileLock

from anatpaste.report import KINDS, Finding, Review, build_objects, review_sr

from .config import ConfigError

logger = logging.getLogger(__name__)

Store = Callable[[list[pydicom.Dataset]], Any]  # STOW-RS of some instances (raises on failure)


def parse_kinds(value: str | None) -> tuple[str, ...]:
    """``"sr,seg,map"`` → ``("sr", "seg", "map")``; empty/absent/``off`` → ``()`` (the default: off)."""
    kinds = tuple(k.strip().lower() for k in (value or "").split(",") if k.strip())
    if kinds in ((), ("off",), ("none",)):
        return ()
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ConfigError(f"write_back takes a comma list of {', '.join(KINDS)}; got {unknown}")
    return tuple(k for k in KINDS if k in kinds)


class WriteBack:
    """What to write, where (``store``), and the ledger of what was written."""

    def __init__(self, kinds: Iterable[str], store: Store, ledger: str | os.PathLike, retries: int = 3,
                 backoff_s: float = 0.5) -> None:
        self.kinds = tuple(kinds)
        self._store = store
        self.ledger = Path(ledger)
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(f"{self.ledger}.lock")
        self.retries, self.backoff_s = retries, backoff_s

    # ---- ledger ----------------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        return json.loads(self.ledger.read_text()) if self.ledger.is_file() else {}

    def _record(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            data = self._read()
            data[key] = {**data.get(key, {}), **entry}
            tmp = self.ledger.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.ledger)

    def status(self) -> dict[str, Any]:
        """For ``GET /info/``: kinds, how many writes were made and failed, the last failures."""
        with self._lock:
            data = self._read()
        failed = {k: v for k, v in data.items() if v.get("status") == "failed"}
        return {
            "kinds": list(self.kinds),
            "written": sum(v.get("status") == "written" for v in data.values()),
            "failed": len(failed),
            "failures": [{"key": k, "error": v.get("error"), "attempts": v.get("attempts"), "at": v.get("at")}
                         for k, v in sorted(failed.items(), key=lambda kv: kv[1].get("at", ""))[-10:]],
        }

    # ---- writing ---------------------------------------------------------------------------------------

    def _write(self, key: str, build: Callable[[], list[pydicom.Dataset]]) -> bool:
        """Build and store the objects of ``key`` unless the ledger says written; never raises."""
        with self._lock:
            previous = self._read().get(key, {})
        if previous.get("status") == "written":
            return False
        attempts = int(previous.get("attempts", 0))
        error = ""
        try:
            datasets = build()
        except Exception as err:  # a header the objects cannot be made from: logged, not retried in a loop
            datasets, error = [], f"cannot build the objects: {type(err).__name__}: {err}"
        for i in range(self.retries if datasets else 0):
            attempts += 1
            try:
                self._store(datasets)
                self._record(key, {"status": "written", "attempts": attempts, "error": None, "at": _now(),
                                   "sop_instance_uids": [str(d.SOPInstanceUID) for d in datasets]})
                logger.info(f"write-back {key}: stored {len(datasets)} objects")
                return True
            except Exception as err:  # network, HTTP 4xx/5xx from the archive
                error = f"{type(err).__name__}: {err}"
                logger.warning(f"write-back {key}: attempt {attempts} failed: {error}")
                if i + 1 < self.retries:
                    time.sleep(self.backoff_s * 2**i)
        logger.error(f"write-back {key}: not written ({error}); retried at the next scoring")
        self._record(key, {"status": "failed", "attempts": attempts, "error": error[:500], "at": _now()})
        return False

    def after_scoring(self, datastore: Any, det: Any, ids: Iterable[str] | None = None) -> dict[str, int]:
        """Write the objects of every image ``det``'s version scored without error (or of ``ids``)."""
        if ids is None:
            ids = [i for i in datastore.list_images() if _scored_by(datastore.get_image_info(i), det.version)]
        written = failed = 0
        for image_id in ids:
            key = f"{image_id}|model|{det.version}"
            if self._write(key, lambda i=image_id: self._result_objects(datastore, det, i)):
                written += 1
            elif self._read().get(key, {}).get("status") == "failed":
                failed += 1
        return {"written": written, "failed": failed}

    def _result_objects(self, datastore: Any, det: Any, image_id: str) -> list[pydicom.Dataset]:
        from anatpaste.gate.familiarity import score_gated  # the gate + score exactly as /infer runs them
        from anatpaste.io import read_radiograph

        path = datastore.get_image_uri(image_id)
        rg = read_radiograph(path)
        res, gate = score_gated(det, rg.pixels, path, maps=bool({"seg", "map"} & set(self.kinds)))
        finding = Finding.of(res, gate.flags, gate.fixed, gate.pixels, det.heat_display_max)
        return list(build_objects(pydicom.dcmread(path), finding, self.kinds).values())

    def after_review(self, datastore: Any, image_id: str) -> bool:
        """The reviewer SR of ``image_id``'s current review (nothing for a withdrawal or without ``sr``)."""
        info = datastore.get_image_info(image_id)
        if "sr" not in self.kinds or info.get("review") not in ("normal", "abnormal"):
            return False
        review = Review(verdict=info["review"], reviewed_at=info["reviewed_at"], reviewer=info.get("reviewer"),
                        ai_score=info.get("anomaly_score"), ai_label=info.get("anomaly_label"),
                        ai_model_version=info.get("scored_by"))
        key = f"{image_id}|review|{review.reviewer}|{review.reviewed_at}|{review.verdict}"
        return self._write(key, lambda: [review_sr(pydicom.dcmread(datastore.get_image_uri(image_id),
                                                                   stop_before_pixels=True), review)])


def _scored_by(info: dict[str, Any], version: str) -> bool:
    return info.get("scored_by") == version and info.get("anomaly_score") is not None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
