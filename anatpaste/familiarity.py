"""The model's own view of an input, the last stage of the input gate (docs/input-gate.md).

The anomaly score is the Mahalanobis distance of the film's embedding to the normals the model learnt.
Both rules here are written in the model file's own figures, so they hold for any model file: the stored
threshold (a high quantile of held-out normals' scores) and the *spread* ``threshold - median`` of those
held-out scores.

* ``unfamiliar`` (flag): a score beyond ``threshold + SPREADS * spread``. A photograph or a page of text
  scores there; real films with large pathologies come near it, so the input is scored and flagged, never
  refused.
* ``orientation`` (refused): when the content gate suspects a turned or upside-down film from its geometry,
  the film is scored turned back as well; if the model finds a turned-back picture more familiar by more
  than one spread, the film is refused: its own score would describe a picture the model never learnt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from anatpaste.content_gate import TURN_BACK, WARNINGS, ContentCheck, check_content
from anatpaste.errors import NotAChestRadiographError

if TYPE_CHECKING:
    from anatpaste.detector import Detector, ScoreResult

SPREADS = 6.0  # just above the highest score of the 2,756 real frontal films in spreads of the shipped model


def spread(payload: dict[str, Any]) -> float:
    """``threshold - median`` of the stored held-out normals' scores; a third of the threshold without them."""
    threshold = payload["threshold"]
    value = float(threshold["value"])
    held = np.asarray(threshold.get("holdout_scores") or [], dtype=np.float64)
    held = held[np.isfinite(held)]
    if held.size < 10:  # too few stored scores for a median
        return value / 3.0
    return max(value - float(np.median(held)), 0.0)


def unfamiliar_limit(payload: dict[str, Any]) -> float:
    """The score above which an input is flagged ``unfamiliar``, from the model file's stored figures."""
    return float(payload["threshold"]["value"]) + SPREADS * spread(payload)


def familiarity_flags(score: float, limit: float) -> list[str]:
    """``["unfamiliar"]`` when ``score`` is beyond ``limit`` (or not finite), else ``[]``."""
    return [] if np.isfinite(score) and score <= limit else ["unfamiliar"]


def check_orientation(det: Detector, gate: ContentCheck, score: float, source: str) -> None:
    """Refuse a film the content gate suspects is turned, if the model finds it turned back more familiar.

    Raises:
        NotAChestRadiographError: reason ``orientation``, ``detail`` the suspicion ("upside down", ...).
    """
    if gate.suspect is None:
        return
    back = det.score_many([np.ascontiguousarray(f(gate.pixels)) for f in TURN_BACK[gate.suspect]])
    margin = spread(det.payload)
    if float(back.min()) < score - margin:
        raise NotAChestRadiographError(
            f"{source}: not scored: the film looks {gate.suspect} (score {score:.1f}; turned back "
            f"{float(back.min()):.1f}); turn it upright and send it again", reason="orientation", detail=gate.suspect,
        )


def score_gated(det: Detector, pixels: np.ndarray, source: str, *, maps: bool = True,
                strict: bool = False) -> tuple[ScoreResult, ContentCheck]:
    """The whole content gate and the score, as ``anatpaste score`` and the server's /infer run them.

    Returns the score of what the gate passed (re-inverted if ``gate.fixed`` says so) and the gate, whose
    ``flags`` include ``unfamiliar`` when the score is beyond :func:`unfamiliar_limit`.

    Raises:
        NotAChestRadiographError: ``orientation``; with ``strict`` also ``no_lungs`` and ``unfamiliar``.
    """
    gate = check_content(pixels, source, strict=strict)
    res = det.score(gate.pixels, maps=maps)
    check_orientation(det, gate, res.score, source)
    limit = unfamiliar_limit(det.payload)
    gate.flags += familiarity_flags(res.score, limit)
    if strict and "unfamiliar" in gate.flags:
        raise NotAChestRadiographError(f"{source}: not scored: {WARNINGS['unfamiliar']} (score {res.score:.1f}, "
                                       f"limit {limit:.1f})", reason="unfamiliar", detail=f"{res.score:.4f}")
    return res, gate
