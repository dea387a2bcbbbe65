"""Detection metrics for a normal-vs-abnormal test set (scores: higher = more anomalous)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def specificity_at_sensitivity(normal: np.ndarray, abnormal: np.ndarray, sensitivity: float) -> float:
    """Share of normals cleared (score below the threshold) at the highest threshold that still flags at
    least ``sensitivity`` of the abnormals — the figure asked for normal-study triage."""
    normal, abnormal = np.asarray(normal, float), np.asarray(abnormal, float)
    if normal.size == 0 or abnormal.size == 0:
        raise ValueError("need at least one normal and one abnormal score")
    # Flag "abnormal" when score >= t. The largest t keeping sensitivity: the k-th largest abnormal score.
    k = int(np.ceil(sensitivity * abnormal.size))
    t = np.sort(abnormal)[::-1][k - 1]
    return float(np.mean(normal < t))


def detection_metrics(normal: np.ndarray, abnormal: np.ndarray) -> dict[str, float]:
    """AUC, average precision (abnormal = positive), specificity at 95 % and 99 % sensitivity."""
    y = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]
    s = np.r_[normal, abnormal]
    return {
        "auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "spec_at_sens95": specificity_at_sensitivity(normal, abnormal, 0.95),
        "spec_at_sens99": specificity_at_sensitivity(normal, abnormal, 0.99),
        "n_normal": int(len(normal)),
        "n_abnormal": int(len(abnormal)),
    }
