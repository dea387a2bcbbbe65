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

A model file that holds the picture's own statistics (:mod:`anatpaste.gate.picture`: layout and texture
Gaussians of its training normals) gets three more rules and a better orientation rule, all in the spreads
of those normals' own cross-fitted distances:

* ``unusual_layout`` (flag): the film area's layout beyond ``LAYOUT_SPREADS``;
* ``unusual_texture`` (flag): the texture of the film area and its lung fields beyond ``TEXTURE_SPREADS``
  (not measured where no lung field was found: ``no_lungs`` speaks there);
* ``partial_film`` (flag, no statistics needed): one side more than ``PARTIAL_ASPECT`` times the other; no
  film format comes near (the largest, 35 x 43 cm, is 1.23), a strip cut out of a film does;
* ``orientation`` (refused): the layout of the picture turned back (mirrored top-bottom or turned by 180;
  turned by 90 either way) is compared with its layout as it is. Where a turned-back copy is closer to the
  normals', the model scores the turned-back copies too, and the two gains, in their own spreads, are added:
  refused if the sum exceeds ``TURNED_EVIDENCE``. The geometric suspicion of the content gate is not used.

Without those statistics (model files written before them) the three rules do not run, a warning says so
once per model file, and the orientation rule is the geometric suspicion confirmed by the model (above).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from anatpaste.errors import NotAChestRadiographError
from anatpaste.gate.content import TURN_BACK, WARNINGS, ContentCheck, check_content
from anatpaste.gate.picture import InputStatistics, statistics_problem
from anatpaste.image import as_unit_image
from anatpaste.preprocess import model_grid

if TYPE_CHECKING:
    from anatpaste.score.detector import Detector, ScoreResult

# Above the highest score of the 2,756 real frontal films under the shipped default (5.9 spreads with its
# per-source Gaussians, default-05d9ab9bac11; 6.9 with one pooled Gaussian, where it was set; 10.3 with the
# previous default and with the pediatric zhanglab_cpu, whose adult films lie far from its normals, so that
# model flags some of them unfamiliar: they are).
SPREADS = 7.5
# The picture's own statistics (anatpaste.gate.picture), in spreads of the normals' cross-fitted distances. Set on
# the 2,756 real frontal films of ../shared/data as a whole (bench/results/input_gate.json, cue_percentiles) with a
# budget fixed beforehand: each flag rule may flag 1 in 1,000 real films (their p99.9, rounded up); a refusal none.
LAYOUT_SPREADS = 6.0  # real films' p99.9 5.98 (max 8.3: the dog's lateral DICOM)
TEXTURE_SPREADS = 12.5  # real films' p99.9 12.5 (max 15.7: a ZhangLab pneumonia film)
TURNED_EVIDENCE = 2.0  # layout gain + score gain of the turned-back copy; real frontal films: at most 0.3
PARTIAL_ASPECT = 2.0  # long side / short side of the picture; film formats: at most 1.23

logger = logging.getLogger(__name__)
_statistics: dict[int, tuple[dict[str, Any], InputStatistics | None]] = {}  # per loaded model payload


def _held_out(payload: dict[str, Any]) -> np.ndarray:
    """Scores of normals the file's Gaussian was not fitted on: a trained file's held-out normals, or a calibrated
    one's cross-fitted site normals (without the latter a calibrated file fell back to threshold fractions)."""
    threshold = payload["threshold"]
    held = np.asarray(threshold.get("holdout_scores") or threshold.get("crossfit_scores") or [], dtype=np.float64)
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
            f"{source}: not scored: the film looks {gate.suspect} (score {score:.3g}; turned back "
            f"{float(back.min()):.3g}); turn it upright and send it again",
            reason="orientation",
            detail=gate.suspect,
        )


def input_statistics(det: Detector) -> InputStatistics | None:
    """The model file's picture statistics; None, and a warning saying why (once per model file), for a file
    without usable ones: none, another format, or fitted with another encoder (``picture.statistics_problem``)."""
    known = _statistics.get(id(det.payload))
    if known is not None and known[0] is det.payload:
        return known[1]
    problem = statistics_problem(det.payload)
    stats = None if problem else InputStatistics.of(det.payload)
    while len(_statistics) >= 4:  # a few model files at a time (the server swaps versions): drop the oldest
        del _statistics[next(iter(_statistics))]
    _statistics[id(det.payload)] = (det.payload, stats)  # the payload is kept, so its id is not reused
    if problem:
        logger.warning(
            f"model {det.version} {problem} (anatpaste.gate.picture): the layout and texture checks do not run, "
            "and orientation is judged by the geometry and the score alone; refit them with "
            "anatpaste.gate.picture.with_input_statistics"
        )
    return stats


def check_turned(
    det: Detector, stats: InputStatistics, gate: ContentCheck, grid: np.ndarray, score: float, source: str
) -> None:
    """Refuse a film whose turned-back copy is both laid out and scored more like the normals (module docstring).

    ``gate.measures`` gets ``layout`` (the picture as it is, in spreads), ``turned_gain`` (the layout gain of
    the better way back) and, where the model was asked, ``turned_evidence``.

    Raises:
        NotAChestRadiographError: reason ``orientation``, ``detail`` the way it looks ("upside down", ...).
    """
    units = stats.layout_units(grid)
    back_units = {way: min(units[f"{way}:0"], units[f"{way}:1"]) for way in TURN_BACK}
    gains = {way: units["as is"] - u for way, u in back_units.items()}
    way = max(gains, key=gains.__getitem__)
    gate.measures.update(layout=units["as is"], turned_gain=gains[way])
    if gains[way] <= 0 or back_units[way] > LAYOUT_SPREADS:
        # no turned-back copy is laid out more like the normals, or none like them at all (a picture unusual
        # every way round is no turned film: unusual_layout speaks): the model is not asked
        return
    back = det.score_many([np.ascontiguousarray(f(gate.pixels)) for f in TURN_BACK[way]])
    evidence = gains[way] + (score - float(back.min())) / spread(det.payload)
    gate.measures["turned_evidence"] = evidence
    if evidence > TURNED_EVIDENCE:
        raise NotAChestRadiographError(
            f"{source}: not scored: the film looks {way} (turned back, its layout is {gains[way]:.1f} spreads "
            f"closer to the training films' and it scores {float(back.min()):.3g} instead of {score:.3g}); turn it "
            "upright and send it again",
            reason="orientation",
            detail=way,
        )


def picture_flags(det: Detector, stats: InputStatistics | None, gate: ContentCheck, grid: np.ndarray) -> list[str]:
    """``partial_film``, and with the statistics ``unusual_layout`` and ``unusual_texture`` (module docstring).

    Adds ``texture`` (in spreads) to ``gate.measures`` when it is measured.
    """
    h, w = gate.pixels.shape
    flags = ["partial_film"] if max(h, w) > PARTIAL_ASPECT * min(h, w) else []
    if stats is None:
        return flags
    layout = gate.measures.get("layout")
    if layout is None:
        layout = stats.layout_units(grid)["as is"]
        gate.measures["layout"] = layout
    if layout > LAYOUT_SPREADS:
        flags.append("unusual_layout")
    if "no_lungs" not in gate.flags and gate.mask is not None:
        from anatpaste.gate.picture import texture_vectors

        vec = texture_vectors(det.encoder, [grid], [gate.mask], det.mean, det.std)
        texture = float(stats.texture.units(stats.texture.distance(vec))[0])
        gate.measures["texture"] = texture
        if texture > TEXTURE_SPREADS:
            flags.append("unusual_texture")
    return flags


def model_checks(det: Detector, gate: ContentCheck, score: float, source: str, *, strict: bool = False) -> list[str]:
    """Everything the gate asks after the score: the orientation (refused) and the familiarity flags.

    The one place every scoring path (``score_gated``, the server's worklist, the benchmark) runs them.

    Returns:
        The flags to add to ``gate.flags``: ``unfamiliar``, ``unusual_layout``, ``unusual_texture``,
        ``partial_film`` (the last three only with a model file's input statistics, but ``partial_film``).

    Raises:
        NotAChestRadiographError: ``orientation``; with ``strict`` also any flag of this function's.
    """
    stats = input_statistics(det)
    grid = model_grid(as_unit_image(gate.pixels), det.image_size)
    if stats is None:
        check_orientation(det, gate, score, source)
    else:
        check_turned(det, stats, gate, grid, score, source)
    limit = unfamiliar_limit(det.payload)
    flags = familiarity_flags(score, limit) + picture_flags(det, stats, gate, grid)
    if strict and flags:
        h, w = gate.pixels.shape
        seen = {
            "unfamiliar": (score, limit),
            "unusual_layout": (gate.measures.get("layout"), LAYOUT_SPREADS),
            "unusual_texture": (gate.measures.get("texture"), TEXTURE_SPREADS),
            "partial_film": (max(h, w) / min(h, w), PARTIAL_ASPECT),
        }
        value, most = seen[flags[0]]
        raise NotAChestRadiographError(
            f"{source}: not scored: {WARNINGS[flags[0]]} ({value:.3g}, limit {most:.3g})",
            reason=flags[0],
            detail=f"{value:.4f}",
        )
    return flags


def score_gated(
    det: Detector, pixels: np.ndarray, source: str, *, maps: bool = True, strict: bool = False
) -> tuple[ScoreResult, ContentCheck]:
    """The whole content gate and the score, as ``anatpaste score`` and the server's /infer run them.

    Returns the score of what the gate passed (re-inverted if ``gate.fixed`` says so) and the gate, whose
    ``flags`` include those of :func:`model_checks`.

    Raises:
        NotAChestRadiographError: ``orientation``; with ``strict`` also every flag (``no_lungs``, ``unfamiliar``, ...).
    """
    gate = check_content(pixels, source, strict=strict)
    res = det.score(gate.pixels, maps=maps)
    gate.flags += model_checks(det, gate, res.score, source, strict=strict)
    return res, gate
