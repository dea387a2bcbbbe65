"""The label-free check that decides whether a fine-tuned encoder replaces the calibrated one.

Held-out site normals (never trained on, never in the Gaussian) against copies of them carrying synthetic
lesions of families the fine-tune never saw (:mod:`anatpaste.paste.lesions`), scored by a Gaussian fitted on
the other site normals: the ROC AUC per family and its mean. Both encoders are judged on the same images and
the same lesions. No abnormal image is involved.
"""

from __future__ import annotations

import torch
from sklearn.metrics import roc_auc_score

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


def lesion_check(
    encoder: ResNet18Encoder,
    fit: ImageSet,
    check: ImageSet,
    lesioned: dict[str, torch.Tensor],
    norm: tuple[float, float],
) -> dict[str, float]:
    """Per-family AUC and their ``mean`` for one encoder."""
    fit_emb = extract(encoder, fit.images, *norm)[0]
    gauss = GaussianScorer.fit(fit_emb)
    s0 = gauss.score(extract(encoder, check.images, *norm)[0])
    out = {}
    for fam, imgs in lesioned.items():
        s1 = gauss.score(extract(encoder, imgs, *norm)[0])
        y = [0] * len(s0) + [1] * len(s1)
        out[fam] = round(float(roc_auc_score(y, torch.cat([s0, s1]).numpy())), 5)
    out["mean"] = round(sum(out[f] for f in lesioned) / len(lesioned), 5)
    return out
