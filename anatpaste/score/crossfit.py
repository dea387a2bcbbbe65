"""Cross-fitted scores: each normal scored by a Gaussian fitted without its fold, as a new film would be.

Used for ``calibrate``'s threshold and for the per-source scorer's scale (:mod:`anatpaste.score.source_gaussians`).
"""

from __future__ import annotations

import numpy as np
import torch

from anatpaste.score.gaussian import GaussianScorer

MAX_FOLDS = 20


def fold_index(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold number (0..folds-1) of each of ``n`` items, balanced and shuffled with ``seed``."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) % folds
    return out


def crossfit_scores(emb: torch.Tensor, folds: int | None = None, seed: int = 0) -> np.ndarray:
    """Score each embedding with a Gaussian fitted on the other folds (``folds`` = n is leave-one-out)."""
    n = emb.shape[0]
    folds = min(n, MAX_FOLDS) if folds is None else min(folds, n)
    fold = fold_index(n, folds, seed)
    out = np.empty(n, dtype=np.float64)
    for f in range(folds):
        inside = torch.from_numpy(fold == f)
        out[inside.numpy()] = GaussianScorer.fit(emb[~inside]).score(emb[inside]).double().numpy()
    return out
