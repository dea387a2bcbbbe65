"""The model's own view of an input, the last stage of the input gate (docs/input-gate.md).

The anomaly score is the Mahalanobis distance of the film's embedding to the normals the model learnt.
Both rules here are written in the model file's own figures, so they hold for any model file: the median and
the *spread* (interquartile range) of the held-out normals' scores stored in the file. The spread is robust
to the tail of those scores, which differs between model files (a model trained on two sites has a longer
tail: its stored 95 % threshold sits 3 spreads above the median, a one-site model's 1.5).

* ``unfamiliar`` (flag): a score beyond ``median + SPREADS * spread``. A photograph or a page of text
  scores there; real films with large pathologies come near it, so the input is scored and flagged, never
  refused.
* ``orientation`` (refused): when the content gate suspects a turned or upside-down film from its geometry,
  the film is scored turned back as well; if the model finds a turned-back picture more familiar by more
  than one spread, the film is refused: its own score would describe a picture the model never learnt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from anatpaste.errors import NotAChestRadiographError
from anatpaste.gate.content import TURN_BACK, WARNINGS, ContentCheck, check_content

if TYPE_CHECKING:
    from anatpaste.score.detector import Detector, ScoreResult

SPREADS = 11.0  # just above the highest score of the 2,756 real frontal films (10.3 spreads, pediatric model)


def _held_out(payload: dict[str, Any]) -> np.ndarray:
    held = np.asarray(payload["threshold"].get("holdout_scores") or [], dtype=np.float64)
    return held[np.isfinite(held)]


def spread(payload: dict[str, Any]) -> float:
    """Interquartile range of the stored held-out normals' scores; a sixth of the threshold without them."""
    held = _held_out(payload)
    if held.size < 10:  # too few stored scores for quartiles
        return float(payload["threshold"]["value"]) / 6.0
    q25, q75 = np.percentile(held, [25, 75])
    return float(q75 - q25)


def unfamiliar_limit(payload: dict[str, Any]) -> float:
    """The score above which an input is flagged ``unfamiliar``, from the model file's stored figures."""
    held = _held_out(payload)
    middle = float(np.median(held)) if held.size >= 10 else 0.75 * float(payload["threshold"]["value"])
    return middle + SPREADS * spread(payload)


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
