"""Overlap scores of two binary masks."""

from __future__ import annotations

import numpy as np


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if p.shape != r.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {r.shape}")
    return p, r


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient 2|P∩R| / (|P| + |R|) of two masks of the same shape (truthy = inside).

    Two empty masks agree perfectly: 1.0.

    Raises:
        ValueError: the shapes differ.
    """
    p, r = _pair(pred, ref)
    total = int(p.sum()) + int(r.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, r).sum()) / total


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union |P∩R| / |P∪R| (Jaccard) of two masks of the same shape.

    Two empty masks agree perfectly: 1.0.

    Raises:
        ValueError: the shapes differ.
    """
    p, r = _pair(pred, ref)
    union = int(np.logical_or(p, r).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, r).sum()) / union
