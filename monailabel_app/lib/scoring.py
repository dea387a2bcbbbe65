"""Worklist scoring: score every datastore image not yet scored by the published model version.

Stored per image (``GET /datastore/?output=all`` shows them): ``anomaly_score``, ``anomaly_label``,
``anomaly_threshold``, ``scored_by`` (model version), ``scored_at``; an image the core refuses gets
``anomaly_error`` instead of a score (and is not retried until the model version changes).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from anatpaste.errors import RadiographError
from anatpaste.io import read_radiograph

from .model_store import LiveModel

logger = logging.getLogger(__name__)

SCORE_KEY = "anomaly_score"
VERSION_KEY = "scored_by"


def _write(datastore: Datastore, updates: dict[str, dict[str, Any]]) -> None:
    bulk = getattr(datastore, "update_image_infos", None)
    if bulk is not None:
        bulk(updates)
    else:
        for image_id, info in updates.items():
            datastore.update_image_info(image_id, info)


class AnatPasteScoring(ScoringMethod):
    """Scores only (no maps), in batches; results are written once per batch."""

    def __init__(self, model: LiveModel, batch_size: int = 16) -> None:
        super().__init__("AnatPaste anomaly score of every image not yet scored by the current model version")
        self.model = model
        self.batch_size = batch_size

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        det = self.model.get()
        force = bool(request.get("force", False))
        todo = [
            i for i in datastore.list_images() if force or datastore.get_image_info(i).get(VERSION_KEY) != det.version
        ]
        t0 = time.perf_counter()
        scored = failed = 0
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            updates: dict[str, dict[str, Any]] = {}
            pixels, ids = [], []
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            for image_id in batch:
                try:
                    pixels.append(read_radiograph(datastore.get_image_uri(image_id)).pixels)
                    ids.append(image_id)
                except RadiographError as err:
                    failed += 1
                    updates[image_id] = {
                        SCORE_KEY: None,
                        "anomaly_label": None,
                        "anomaly_error": f"{type(err).__name__}: {err}",
                        VERSION_KEY: det.version,
                        "scored_at": now,
                    }
            for image_id, score in zip(ids, det.score_many(pixels) if pixels else [], strict=True):
                score = float(score)
                updates[image_id] = {
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
            "skipped": len(datastore.list_images()) - len(todo),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        logger.info(f"anatpaste scoring: {result}")
        return result
