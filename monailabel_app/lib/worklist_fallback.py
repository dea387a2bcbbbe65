"""The "next study" answer while the worklist is still being scored.

Right after start-up (or after a training, or on a large archive for minutes) no image has a score of any
version yet, and the most-anomalous strategy has nothing to serve: MONAI Label then answered ``{}``, which a
client reads as "all reviewed". Instead the worklist serves an unreviewed study that is not scored yet, with
the scoring progress, so that a reader can start at once (the client scores the study it opens anyway).
"""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.datastore import Datastore

from .ids import is_image_id
from .review import REVIEW_KEY
from .scoring import SCORE_KEY, VERSION_KEY


def unscored_study(datastore: Datastore, version: str | None) -> dict[str, Any] | None:
    """``{"id", "anomaly_score": None, "scored_by": None, "worklist": {"status": "scoring", "scored", "total"}}``
    for the first unreviewed image not yet tried by ``version``; None when there is none."""
    ids = [i for i in datastore.list_images() if is_image_id(i)]
    scored, first = 0, None
    for image_id in ids:
        info = datastore.get_image_info(image_id)
        if version is not None and info.get(VERSION_KEY) == version:
            scored += 1
        elif first is None and info.get(REVIEW_KEY) is None and not isinstance(info.get(SCORE_KEY), (int, float)):
            first = image_id
    if first is None:
        return None
    progress = {"status": "scoring", "scored": scored, "total": len(ids)}
    return {"id": first, SCORE_KEY: None, VERSION_KEY: None, "worklist": progress}
