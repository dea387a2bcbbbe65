"""Calibrate a model file on a site's normals: same encoder, new image Gaussian, heatmap Gaussians and threshold.

The threshold is an order statistic of *cross-fitted* scores: the normals are split into folds and each one is
scored by a Gaussian fitted without its fold, so every score is that of a normal the Gaussian never saw — as a
new study will be. With ``n`` cross-fitted scores and the threshold at the ``k``-th smallest, the share of new
normals above it (the false-positive rate) follows Beta(n + 1 − k, k) whatever the score distribution, which
gives the stored interval. ``k = ceil(q·(n + 1))`` makes the expected false-positive rate at most ``1 − q``.

Normals the encoder has trained on (recorded in the model file, :mod:`anatpaste.model.trained_on`) score lower
than new ones: they are left out of the threshold when at least :data:`MIN_NORMALS` others remain, and the
model file says so (``threshold.n_seen_left_out``, or a ``warning`` when too few others remain).

The input gate's picture statistics (:mod:`anatpaste.gate.picture`) are the encoder's: a payload whose statistics
were fitted with its encoder keeps them (calibrate does not change it); one without usable statistics — none, an
older format, or its parent's copied along with a fine-tuned encoder (``adapt``'s candidates) — gets them fitted
on the site's normals (none with fewer than ``picture.MIN_NORMALS``).
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import beta

from anatpaste.data import ImageSet
from anatpaste.errors import AnatPasteError
from anatpaste.gate.picture import statistics_problem, with_input_statistics
from anatpaste.model.file import encoder_of
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.model.trained_on import seen_by_encoder
from anatpaste.score import GaussianScorer, HeatmapScorer
from anatpaste.score.crossfit import MAX_FOLDS, crossfit_scores, fold_index
from anatpaste.score.features import extract
from anatpaste.score.heat_calibration import DISPLAY_HOW, calibrate_heatmap

MIN_NORMALS = 10  # below this the threshold's false-positive rate interval spans most of [0, 1]


class CalibrationError(AnatPasteError, ValueError):
    """Too few usable normal images to calibrate on."""


@dataclass
class Threshold:
    """A cross-fitted threshold and what it promises."""

    value: float
    k: int  # the threshold is the k-th smallest of n cross-fitted scores
    n: int
    quantile: float
    expected_fpr: float
    fpr_interval: tuple[float, float]  # 90 % interval of the false-positive rate on new normals

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "k": self.k,
            "n": self.n,
            "quantile": self.quantile,
            "target_fpr": round(1 - self.quantile, 6),
            "expected_fpr": self.expected_fpr,
            "fpr_interval": list(self.fpr_interval),
        }


def crossfit_threshold(scores: np.ndarray, quantile: float) -> Threshold:
    """The conformal order statistic of cross-fitted normal scores for a target false-positive rate 1 − q."""
    if not 0.5 <= quantile < 1:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    k = min(n, math.ceil(quantile * (n + 1)))
    lo, hi = beta.ppf([0.05, 0.95], n + 1 - k, k)
    return Threshold(
        value=float(s[k - 1]),
        k=k,
        n=n,
        quantile=quantile,
        expected_fpr=round((n + 1 - k) / (n + 1), 6),
        fpr_interval=(round(float(lo), 6), round(float(hi), 6)),
    )


def crossfit_heat_distances(grids: torch.Tensor, channels: int, seed: int, folds: int = 5) -> torch.Tensor:
    """(N, h, w) per-location distances of each normal under heatmap Gaussians fitted without it: what the
    per-location scale and the display threshold are set from (see ``anatpaste.score.heat_calibration``)."""
    n = grids.shape[0]
    folds = min(folds, n)
    fold = fold_index(n, folds, seed)
    out = torch.empty(n, *grids.shape[-2:])
    for f in range(folds):
        inside = torch.from_numpy(fold == f)
        heat = HeatmapScorer.fit(grids[~inside], channels, generator=torch.Generator().manual_seed(seed))
        out[inside] = heat.distance_grid(grids[inside])
    return out


@dataclass
class SeenNormals:
    """How many of the normals offered for the threshold the encoder has trained on, and what was done."""

    n_seen: int
    n_left_out: int
    warning: str | None = None


def threshold_normals(
    payload: dict[str, Any], data: ImageSet, threshold_from: torch.Tensor | None = None
) -> tuple[np.ndarray, SeenNormals]:
    """Indices of the normals whose cross-fitted scores set the threshold: ``threshold_from`` (default all)
    without those the encoder trained on (:mod:`anatpaste.model.trained_on`), unless fewer than
    :data:`MIN_NORMALS` would be left; then all of them, with a warning that the threshold will flag more new
    normals than its target."""
    offered = (
        np.arange(len(data)) if threshold_from is None else torch.as_tensor(threshold_from, dtype=torch.long).numpy()
    )
    seen = seen_by_encoder(payload, data.images).numpy()[offered]
    n_seen = int(seen.sum())
    if n_seen == 0:
        return offered, SeenNormals(0, 0)
    if len(offered) - n_seen >= MIN_NORMALS:
        return offered[~seen], SeenNormals(n_seen, n_seen)
    warning = (
        f"{n_seen} of the {len(offered)} normals for the threshold are films this model's encoder trained on, which "
        f"score lower than new normals; fewer than {MIN_NORMALS} others, so all were used: expect more new normals "
        "flagged than the target. Calibrate on normals the model has not trained on."
    )
    return offered, SeenNormals(n_seen, 0, warning)


def calibrate(
    payload: dict[str, Any],
    data: ImageSet,
    *,
    quantile: float | None = None,
    seed: int = 0,
    encoder: ResNet18Encoder | None = None,
    summary: dict[str, Any] | None = None,
    threshold_from: torch.Tensor | None = None,
) -> dict[str, Any]:
    """A new model payload: ``payload``'s encoder (unchanged, same tensors) with statistics fitted on ``data``.

    The input gate's picture statistics are kept where they were fitted with ``payload``'s encoder, and fitted on
    ``data`` otherwise (see the module docstring).

    Args:
        payload: a loaded model file (see :mod:`anatpaste.model.file`).
        data: the site's normal images at the model's input size.
        quantile: target quantile of the threshold (default: the model's own, usually 0.95).
        seed: fold assignment and heatmap channel choice.
        encoder: the payload's encoder if the caller already has it loaded.
        summary: stored under ``calibration`` (e.g. folders, skipped files).
        threshold_from: indices of the normals whose cross-fitted scores set the threshold (default: all).
            After a fine-tune, only the normals it never trained on: the encoder has learnt the others, whose
            scores are then too low and would give a threshold that flags too many new normals. Normals that
            the payload records as trained on are left out too (:func:`threshold_normals`).

    Raises:
        CalibrationError: fewer than :data:`MIN_NORMALS` images.
    """
    if len(data) < MIN_NORMALS:
        raise CalibrationError(f"{len(data)} readable normal images; calibration needs at least {MIN_NORMALS}")
    size = int(payload["preprocessing"]["image_size"])
    if data.images.shape[-1] != size:
        raise ValueError(f"images are {data.images.shape[-1]} px but the model takes {size} px")
    t0 = time.perf_counter()
    quantile = float(payload["threshold"].get("quantile", 0.95)) if quantile is None else quantile
    enc = encoder if encoder is not None else encoder_of(payload)
    pre = payload["preprocessing"]
    emb, grids = extract(enc, data.images, float(pre["norm_mean"]), float(pre["norm_std"]), with_grid=True)
    channels = len(payload["heatmap"]["channels"])
    gauss = GaussianScorer.fit(emb)
    heat = HeatmapScorer.fit(grids, channels, generator=torch.Generator().manual_seed(seed))
    scores = crossfit_scores(emb, seed=seed)
    chosen, seen = threshold_normals(payload, data, threshold_from)
    scores = scores[chosen]
    thr = crossfit_threshold(scores, quantile)
    folds = min(len(data), MAX_FOLDS)
    out = dict(payload)
    out["gaussian"] = gauss.state_dict()
    out["image_scorer"] = "one Gaussian of the site's normals"  # a site is one source
    heat, display, _ = calibrate_heatmap(heat, crossfit_heat_distances(grids, channels, seed), data.lungs)
    out["heatmap"] = {**heat.state_dict(), "display_max": display, "display_how": DISPLAY_HOW + ", cross-fitted"}
    out["threshold"] = {
        **thr.to_dict(),
        "crossfit_scores": sorted(float(s) for s in scores),
        "n_seen_by_encoder": seen.n_seen,
        "n_seen_left_out": seen.n_left_out,
        "how": (
            f"k-th smallest of {thr.n} cross-fitted scores of the site's normals ({folds} folds: each scored by a "
            "Gaussian fitted without it"
            + ("; only normals the encoder never trained on" if seen.n_left_out or threshold_from is not None else "")
            + "), k = ceil(q (n + 1)); false-positive rate on new normals ~ Beta(n + 1 - k, k) (no abnormal labels)"
        ),
        **({"warning": seen.warning} if seen.warning else {}),
    }
    if statistics_problem(payload) is not None:  # else the parent's, still those of this encoder, are kept
        # Fitted on every site normal given (for a fine-tuned candidate: those it trained on and its check
        # normals), not on ``adapt``'s replay normals although the gentle fine-tune saw them: the statistics say
        # whether a film is like those this file's Gaussian and threshold describe, which are the site's alone,
        # and a replay set of the parent's site (often far larger) would make the parent's films the familiar ones.
        out = with_input_statistics(out, data, encoder_changed=True, encoder=enc, seed=seed)
    out["calibration"] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n_images": len(data),
        "folds": folds,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 2),
        **(summary or {}),
    }
    return out
