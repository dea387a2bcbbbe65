"""Worklist order: the most anomalous study that nobody has reviewed yet comes first."""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from .review import REVIEW_KEY
from .scoring import SCORE_KEY, VERSION_KEY

logger = logging.getLogger(__name__)


class MostAnomalous(Strategy):
    """Highest ``anomaly_score`` among images without a review; ties broken by id.

    Unscored images are not served (the scoring method runs at start-up, after each training and after a call
    of this strategy that finds unscored images); ``{}`` when every scored image is reviewed.
    """

    def __init__(self) -> None:
        super().__init__("Most anomalous unreviewed study first (needs the anatpaste_score scoring method)")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        candidates = []
        for image_id in datastore.list_images():
            info = datastore.get_image_info(image_id)
            score = info.get(SCORE_KEY)
            if info.get(REVIEW_KEY) is None and isinstance(score, (int, float)):
                candidates.append((-float(score), image_id, info.get(VERSION_KEY)))
        if not candidates:
            return None
        neg_score, image_id, version = min(candidates)
        logger.info(f"most anomalous unreviewed: {image_id} (score {-neg_score:.4f}, by {version})")
        return {"id": image_id, SCORE_KEY: -neg_score, VERSION_KEY: version}
