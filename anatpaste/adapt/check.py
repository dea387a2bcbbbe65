"""The label-free check that decides whether a fine-tuned encoder replaces the calibrated one.

Held-out site normals (never trained on, never in the Gaussian) against copies of them carrying synthetic
lesions of families the fine-tune never saw (:mod:`anatpaste.paste.lesions`), scored by a Gaussian fitted on
the other site normals: the ROC AUC per family and its mean. Both encoders are judged on the same images and
the same lesions. No abnormal image is involved.

The check sees only a fifth of the site's normals (7 at a site that has 34), so its figures are noisy; a
paired bootstrap over those normals (:func:`paired_gain`) says how sure a gain between two encoders is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from anatpaste.data import ImageSet
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.paste.lesions import FAMILIES, add_lesions
from anatpaste.score import GaussianScorer
from anatpaste.score.features import extract


def lesioned_copies(check: ImageSet, copies: int, seed: int) -> dict[str, torch.Tensor]:
    """uint8 lesioned copies (``copies`` per image) of each family; a fixed draw for a given seed."""
    x = check.images.float().repeat(copies, 1, 1, 1) / 255.0
    lungs = check.lungs.repeat(copies, 1, 1, 1)
    out = {}
    for i, fam in enumerate(FAMILIES):
        g = torch.Generator().manual_seed(seed * 1009 + i)
        out[fam] = torch.round(add_lesions(x, lungs, fam, g).clamp(0, 1) * 255).to(torch.uint8)
    return out


@dataclass
class CheckScores:
    """One encoder's scores on the check: ``normal[i]`` of held-out normal i, ``lesioned[family][c, i]`` of its
    lesioned copy c (the copies of :func:`lesioned_copies` are stacked copy-major)."""

    normal: np.ndarray
    lesioned: dict[str, np.ndarray]

    def aucs(self, idx: np.ndarray | None = None) -> dict[str, float]:
        """Per-family ROC AUC and their ``mean``, on the normals ``idx`` (default all) and their copies."""
        idx = np.arange(len(self.normal)) if idx is None else idx
        out = {
            fam: float(_auc(self.normal[idx][None], s[:, idx].reshape(1, -1))[0]) for fam, s in self.lesioned.items()
        }
        out["mean"] = sum(out.values()) / len(out)
        return {k: round(v, 5) for k, v in out.items()}


def _auc(s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC of (R, m) negatives against (R, k) positives, from ranks (ties count a half)."""
    m, k = s0.shape[1], s1.shape[1]
    ranks = rankdata(np.concatenate([s0, s1], axis=1), axis=1)
    return (ranks[:, m:].sum(1) - k * (k + 1) / 2) / (k * m)


def lesion_scores(
    encoder: ResNet18Encoder,
    fit: ImageSet,
    check: ImageSet,
    lesioned: dict[str, torch.Tensor],
    norm: tuple[float, float],
) -> CheckScores:
    """Scores of the check normals and their lesioned copies by a Gaussian on ``encoder``'s embedding of ``fit``."""
    gauss = GaussianScorer.fit(extract(encoder, fit.images, *norm)[0])
    normal = gauss.score(extract(encoder, check.images, *norm)[0]).numpy()
    n = len(normal)
    return CheckScores(
        normal, {fam: gauss.score(extract(encoder, x, *norm)[0]).numpy().reshape(-1, n) for fam, x in lesioned.items()}
    )


def paired_gain(
    base: CheckScores, other: CheckScores, *, reps: int = 2000, quantile: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """``other``'s mean AUC minus ``base``'s, and the ``quantile`` of that gain over bootstrap resamples of the
    check normals (each normal drawn with its lesioned copies, the same draw for both encoders)."""
    n = len(base.normal)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n))

    def mean_auc(s: CheckScores) -> np.ndarray:
        per_family = [
            _auc(s.normal[idx], les[:, idx].transpose(1, 0, 2).reshape(reps, -1)) for les in s.lesioned.values()
        ]
        return np.mean(per_family, axis=0)

    gain = other.aucs()["mean"] - base.aucs()["mean"]
    return round(float(gain), 5), round(float(np.quantile(mean_auc(other) - mean_auc(base), quantile)), 5)
