"""Worklist scoring: score every datastore image not yet scored by the published model version.

Stored per image (``GET /datastore/?output=all`` shows them): ``anomaly_score``, ``anomaly_label``,
``anomaly_threshold``, ``anomaly_flags`` and ``anomaly_fixed`` (the input gate's, docs/input-gate.md),
``scored_by`` (model version), ``scored_at``; an image the core refuses gets
``anomaly_error`` instead of a score (and is not retried until the model version changes), naming the image
by its id, never by its server path.

One bad image never stops the others: an id the app refuses (e.g. ``.`` from a file named ``..jpeg``) is
skipped and logged, a file that cannot be read gets its ``anomaly_error``, and a batch whose write fails is
written image by image.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from anatpaste.errors import RadiographError
from anatpaste.gate.content import check_content
from anatpaste.gate.familiarity import model_checks
from anatpaste.io import read_radiograph

from .ids import is_image_id
from .limits import DEFAULT_MAX_PIXELS
from .model_store import LiveModel

logger = logging.getLogger(__name__)

SCORE_KEY = "anomaly_score"
FLAGS_KEY = "anomaly_flags"  # the input gate's flags (no_lungs, unfamiliar, ...): scored, but worth a look
VERSION_KEY = "scored_by"


def _write(datastore: Datastore, updates: dict[str, dict[str, Any]]) -> None:
    bulk = getattr(datastore, "update_image_infos", None)
    if bulk is not None:
        try:
            bulk(updates)
            return
        except Exception as err:  # e.g. an image removed meanwhile (404): write the others one by one
            logger.warning(f"anatpaste scoring: batch write failed ({err!r}); writing image by image")
    for image_id, info in updates.items():
        try:
            datastore.update_image_info(image_id, info)
        except Exception as err:
            logger.warning(f"anatpaste scoring: cannot store the score of {image_id!r}: {err!r}")


def _error_text(err: Exception, uri: str, image_id: str) -> str:
    """``"<TypedErrorName>: message"`` with the server's path of the image replaced by its id."""
    message = str(err).replace(uri, image_id) if uri else str(err)
    return f"{type(err).__name__}: {message}"


class AnatPasteScoring(ScoringMethod):
    """Scores only (no maps), in batches; results are written once per batch."""

    def __init__(self, model: LiveModel, batch_size: int = 16, max_pixels: int = DEFAULT_MAX_PIXELS,
                 write_back: Any = None) -> None:
        super().__init__("AnatPaste anomaly score of every image not yet scored by the current model version")
        self.model = model
        self.batch_size = batch_size
        self.max_pixels = max_pixels  # the same limit as /infer (:mod:`.limits`)
        self.write_back = write_back  # results into the archive (:mod:`.write_back`); None = off

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        det = self.model.get()
        force = bool(request.get("force", False))
        listed = datastore.list_images()
        bad_ids = [i for i in listed if not is_image_id(i)]
        if bad_ids:
            logger.error(f"anatpaste scoring: skipping ids the app refuses (rename or remove their files): {bad_ids}")
        todo = [
            i
            for i in listed
            if is_image_id(i) and (force or datastore.get_image_info(i).get(VERSION_KEY) != det.version)
        ]
        t0 = time.perf_counter()
        scored = failed = 0
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            updates: dict[str, dict[str, Any]] = {}
            pixels, ids, gates = [], [], []
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            for image_id in batch:
                uri = ""
                try:
                    uri = datastore.get_image_uri(image_id)
                    # the content gate: an inverted film is re-inverted; no lung field: flagged
                    gate = check_content(read_radiograph(uri, max_pixels=self.max_pixels).pixels, uri)
                    pixels.append(gate.pixels)
                    ids.append(image_id)
                    gates.append(gate)
                except RadiographError as err:
                    failed += 1
                    updates[image_id] = {
                        SCORE_KEY: None,
                        "anomaly_label": None,
                        "anomaly_error": _error_text(err, uri, image_id),
                        FLAGS_KEY: None,
                        VERSION_KEY: det.version,
                        "scored_at": now,
                    }
                except Exception as err:  # e.g. an archive that failed to send the file: retried next run
                    failed += 1
                    logger.error(f"anatpaste scoring: cannot read {image_id!r}: {_error_text(err, uri, image_id)}")
            for image_id, gate, score in zip(ids, gates, det.score_many(pixels) if pixels else [], strict=True):
                score = float(score)
                try:  # a turned film is refused; the rest flagged as the model sees it (anatpaste.gate.familiarity)
                    flags = model_checks(det, gate, score, image_id)
                except RadiographError as err:
                    failed += 1
                    updates[image_id] = {SCORE_KEY: None, "anomaly_label": None, FLAGS_KEY: None,
                                         "anomaly_error": _error_text(err, "", image_id), VERSION_KEY: det.version,
                                         "scored_at": now}
                    continue
                updates[image_id] = {
                    FLAGS_KEY: gate.flags + flags,
                    "anomaly_fixed": gate.fixed,
                    SCORE_KEY: round(score, 6),
                    "anomaly_label": "abnormal" if score > det.threshold else "normal",
                    "anomaly_threshold": round(det.threshold, 6),
                    "anomaly_error": None,
                    VERSION_KEY: det.version,
                    "scored_at": now,
                }
                scored += 1
            _write(datastore, updates)
        result = {
            "model_version": det.version,
            "scored": scored,
            "failed": failed,
            "skipped": len(listed) - len(todo),
            "bad_ids": bad_ids,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if self.write_back is not None:  # after the scores are stored; it never raises
            result["write_back"] = self.write_back.after_scoring(datastore, det)
        logger.info(f"anatpaste scoring: {result}")
        return result
