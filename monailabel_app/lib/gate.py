"""The sanity gate a trained candidate must pass before it is published.

Checks, on the run's own held-out normals (the split the core's training loop used, so the candidate never
trained on them):

1. The candidate file loads and scores: finite threshold, finite scores, a heatmap and lung mask of the
   input's shape.
2. Its synthetic-anomaly AUC (held-out normals vs AnatPaste-pasted copies of them, the core's label-free
   selection measure) is at least ``min_auc``.
3. It is not worse than the published model's synthetic AUC on the same images by more than ``tolerance``.

With few normals the AUC is coarse (4 held-out normals give steps of 1/16); the tolerance absorbs that noise.
The published model may have trained on some of these images (the base normals), which favours it: the gate
errs on the side of keeping the published model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anatpaste.data import ImageSet
from anatpaste.model.file import load_model
from anatpaste.score.detector import Detector
from anatpaste.train import TrainConfig
from anatpaste.train.selection import detector_synthetic_auc, split_holdout


@dataclass
class GateResult:
    passed: bool
    reason: str
    candidate_auc: float | None
    current_auc: float | None
    n_holdout: int

    def to_dict(self) -> dict:
        return asdict(self)


def model_synthetic_auc(model_file: str | Path, data: ImageSet, config: TrainConfig) -> float:
    """Synthetic-anomaly AUC of a model file's encoder on the run's held-out normals."""
    det = Detector(load_model(model_file), version="gate")
    return detector_synthetic_auc(det, data, config.holdout_fraction, config.seed)


def usable(model_file: str | Path, data: ImageSet) -> str | None:
    """None if the candidate scores one image sanely, else what is wrong."""
    det = Detector(load_model(model_file), version="gate")
    if not math.isfinite(det.threshold):
        return f"threshold is {det.threshold}"
    img = data.images[0, 0].float().numpy() / 255.0
    res = det.score(img, maps=True)
    if not math.isfinite(res.score):
        return f"score is {res.score}"
    if res.heatmap is None or res.heatmap.shape != img.shape or not np.isfinite(res.heatmap).all():
        return "heatmap is missing, of the wrong shape, or not finite"
    if res.lung_mask is None or res.lung_mask.shape != img.shape:
        return "lung mask is missing or of the wrong shape"
    return None


def decide(candidate_auc: float, current_auc: float | None, min_auc: float, tolerance: float) -> tuple[bool, str]:
    """Checks 2 and 3 of the module docstring on the two AUCs: (passed, reason)."""
    if candidate_auc < min_auc:
        return False, f"synthetic AUC {candidate_auc:.3f} is below the minimum {min_auc:.3f}"
    if current_auc is not None and candidate_auc < current_auc - tolerance:
        return False, (
            f"synthetic AUC {candidate_auc:.3f} is worse than the published model's "
            f"{current_auc:.3f} by more than {tolerance:.3f}"
        )
    versus = f" (published model: {current_auc:.3f})" if current_auc is not None else ""
    return True, f"synthetic AUC {candidate_auc:.3f}{versus}"


def check(
    candidate: str | Path,
    current: str | Path | None,
    data: ImageSet,
    config: TrainConfig,
    min_auc: float,
    tolerance: float,
) -> GateResult:
    """Run the three checks of the module docstring; ``current`` None = nothing published yet."""
    n_holdout = len(split_holdout(len(data), config.holdout_fraction, config.seed)[1])
    problem = usable(candidate, data)
    if problem:
        return GateResult(False, f"candidate unusable: {problem}", None, None, n_holdout)
    cand_auc = model_synthetic_auc(candidate, data, config)
    cur_auc = model_synthetic_auc(current, data, config) if current else None
    passed, reason = decide(cand_auc, cur_auc, min_auc, tolerance)
    return GateResult(passed, reason, cand_auc, cur_auc, n_holdout)
