"""A clinician's review of a study, kept in the datastore's image info (docs/server-api.md).

The client sends ``PUT /datastore/image/info?image=<id>`` with ``info={"review": "normal"}``; the datastore
passes the info through :func:`stamp_review` before storing it. ``review: "normal"`` is a confirmed normal,
which the trainer uses; ``null`` withdraws a review.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from monailabel.interfaces.datastore import Datastore

from .errors import bad_request

REVIEW_KEY = "review"
REVIEW_VALUES = ("normal", "abnormal")
NORMAL = "normal"


def stamp_review(info: dict[str, Any], auth_enabled: bool) -> dict[str, Any]:
    """Check a review and add ``reviewed_at`` (UTC, ISO 8601) and, with auth on, ``reviewer``.

    MONAI Label's endpoint puts the caller's user name into ``info["user"]``; without auth every caller is
    MONAI Label's default "admin", so no reviewer is recorded then.

    Raises:
        HTTPException: 400 when ``review`` is not "normal", "abnormal" or null.
    """
    if REVIEW_KEY not in info:
        return info
    review = info[REVIEW_KEY]
    if review is not None and review not in REVIEW_VALUES:
        raise bad_request(f"review must be one of {list(REVIEW_VALUES)} or null, got {review!r}")
    out = dict(info)
    out["reviewed_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds") if review else None
    out["reviewer"] = info.get("user") if (auth_enabled and review) else None
    return out


def reviewed(datastore: Datastore) -> tuple[list[str], list[str]]:
    """(ids reviewed normal, ids reviewed abnormal), in datastore order."""
    normal, abnormal = [], []
    for i in datastore.list_images():
        review = datastore.get_image_info(i).get(REVIEW_KEY)
        if review == NORMAL:
            normal.append(i)
        elif review == "abnormal":
            abnormal.append(i)
    return normal, abnormal


def confirmed_normals(datastore: Datastore) -> list[str]:
    """Ids of the images reviewed as normal, in datastore order."""
    return reviewed(datastore)[0]
