"""Image score for a model trained on several sources (children's and adults' films): one Gaussian per source,
and a film's score is its smallest distance, each in units of that source's own scale.

Why: one Gaussian over children and adults spans both populations, so it is broad for each, and a pasted
anomaly in a child's film can still look typical next to the adults. Per source, the Gaussians stay tight
(label-free figure of the shipped encoder: 0.902 against 0.886 for one pooled Gaussian,
``bench/results/scoring_variants_per_source.json``). The scale is the median cross-fitted distance of that
source's own normals, so a small source (whose Gaussian, fitted on fewer films, gives larger distances) is
neither favoured nor penalised by the size of its numbers; scores are then about 1 for a typical normal.

A file holding one Gaussian (a single-source run, ``calibrate`` at a site) keeps the plain
:class:`~anatpaste.score.gaussian.GaussianScorer`; :func:`image_scorer` reads either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from anatpaste.score.crossfit import crossfit_scores
from anatpaste.score.gaussian import GaussianScorer
from anatpaste.score.source_quantile import MIN_SOURCE_NORMALS

SCALE_FOLDS = 5


class SourceGaussians:
    """Gaussians of several sources with their scales; score = min over sources of distance / scale.

    Example:
        >>> import torch
        >>> emb = torch.cat([torch.randn(60, 8), torch.randn(40, 8) + 3])
        >>> src = torch.cat([torch.zeros(60), torch.ones(40)]).long()
        >>> g = SourceGaussians.fit(emb, src)
        >>> len(g.parts), tuple(g.score(emb[:3]).shape)
        (2, (3,))
    """

    def __init__(self, parts: list[GaussianScorer], scales: list[float]) -> None:
        if not parts or len(parts) != len(scales):
            raise ValueError("need one scale per Gaussian, and at least one")
        self.parts, self.scales = parts, [float(s) for s in scales]

    @classmethod
    def fit(cls, embeddings: torch.Tensor, source: torch.Tensor, seed: int = 0) -> SourceGaussians:
        """One Gaussian per source of (N, D) ``embeddings`` (every source needs MIN_SOURCE_NORMALS normals)."""
        parts, scales = [], []
        for s in torch.unique(source).tolist():
            own = embeddings[source == s]
            if own.shape[0] < MIN_SOURCE_NORMALS:
                raise ValueError(f"source {s} has {own.shape[0]} normals; each needs {MIN_SOURCE_NORMALS}")
            parts.append(GaussianScorer.fit(own))
            scales.append(float(np.median(crossfit_scores(own, folds=SCALE_FOLDS, seed=seed))))
        return cls(parts, scales)

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) smallest scaled distance over the sources; higher = more anomalous."""
        scaled = [g.score(embeddings) / s for g, s in zip(self.parts, self.scales, strict=True)]
        return torch.stack(scaled).min(0).values

    def state_dict(self) -> dict[str, Any]:
        return {"per_source": [g.state_dict() for g in self.parts], "scales": torch.tensor(self.scales)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SourceGaussians:
        return cls([GaussianScorer.from_state_dict(p) for p in state["per_source"]], state["scales"].tolist())


ImageScorer = GaussianScorer | SourceGaussians


def fit_image_scorer(embeddings: torch.Tensor, source: torch.Tensor | None, seed: int = 0) -> ImageScorer:
    """Per-source Gaussians when there are two or more sources and every one has MIN_SOURCE_NORMALS normals, else
    one Gaussian of them all."""
    if source is not None:
        counts = torch.bincount(source)
        counts = counts[counts > 0]
        if len(counts) >= 2 and bool((counts >= MIN_SOURCE_NORMALS).all()):
            return SourceGaussians.fit(embeddings, source, seed=seed)
    return GaussianScorer.fit(embeddings)


def image_scorer(state: dict[str, Any]) -> ImageScorer:
    """The image scorer a model file stores under ``gaussian``: one Gaussian, or one per source."""
    return SourceGaussians.from_state_dict(state) if "per_source" in state else GaussianScorer.from_state_dict(state)
