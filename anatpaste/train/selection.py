"""Label-free model selection: how well do embeddings separate held-out normals from their pasted copies?

No abnormal image is involved: the "anomalies" are AnatPaste pastes into normals the network never trained
on, drawn with a fixed seed so every evaluation of a run sees the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.metrics import roc_auc_score

from anatpaste.data import ImageSet
from anatpaste.model import AnatPasteNet
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.paste import AnatPaste
from anatpaste.preprocess import NORM_MEAN, NORM_STD
from anatpaste.score import GaussianScorer
from anatpaste.score.detector import Detector
from anatpaste.score.features import extract

FIT_IMAGES = 512  # training normals the evaluation Gaussian is fitted on


def pasted_copies(images: ImageSet, paster: AnatPaste, seed: int) -> torch.Tensor:
    """uint8 pasted copies of ``images`` with a fixed draw (the same at every call)."""
    g = torch.Generator().manual_seed(seed)
    x = images.images.float() / 255.0
    out = paster(x, images.lungs, generator=g)
    return torch.round(out * 255.0).to(torch.uint8)


def synthetic_auc(
    encoder: ResNet18Encoder,
    fit_images: torch.Tensor,
    normals: torch.Tensor,
    pasted: torch.Tensor,
    mean: float,
    std: float,
) -> float:
    """ROC AUC of the Gaussian score (fitted on ``fit_images``) for held-out normals vs their pasted copies.

    This is what a shipped model scores with, so it drives checkpoint selection.
    """
    fit_emb, e0, e1 = (extract(encoder, x, mean, std)[0] for x in (fit_images, normals, pasted))
    return gaussian_auc(fit_emb, e0, e1)


def gaussian_auc(fit_emb: torch.Tensor, normal_emb: torch.Tensor, pasted_emb: torch.Tensor) -> float:
    """:func:`synthetic_auc` on embeddings already extracted."""
    gauss = GaussianScorer.fit(fit_emb)
    s0, s1 = gauss.score(normal_emb), gauss.score(pasted_emb)
    return float(roc_auc_score([0] * len(s0) + [1] * len(s1), torch.cat([s0, s1]).numpy()))


@torch.no_grad()
def classifier_auc(net: AnatPasteNet, normal_emb: torch.Tensor, pasted_emb: torch.Tensor) -> float:
    """ROC AUC of the pretext head's probability of "pasted" on the embeddings of held-out normals and their
    pasted copies: the direct measure of what the network learnt."""
    was_training = net.training
    net.eval()
    try:
        dev = next(net.parameters()).device
        logits = net.classifier(net.head(torch.cat([normal_emb, pasted_emb]).to(dev)))
    finally:
        net.train(was_training)
    p_pasted = torch.softmax(logits.float(), 1)[:, 1].cpu().numpy()
    return float(roc_auc_score([0] * len(normal_emb) + [1] * len(pasted_emb), p_pasted))


def split_holdout(n: int, fraction: float, seed: int, minimum: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, holdout) index split; at least 2 images on each side, ``minimum`` held out."""
    if n < 4:
        raise ValueError(f"need at least 4 normal images to train (2 to learn, 2 held out), got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    k = min(max(minimum, round(n * fraction)), n - 2)
    return perm[k:].sort().values, perm[:k].sort().values


def holdout_split(data: ImageSet, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``split_holdout`` within each source of ``data`` (all of it when it has none), so that adding a source
    leaves the earlier sources' held-out images exactly as they were."""
    if data.source is None:
        return split_holdout(len(data), fraction, seed)
    parts = []
    for s in torch.unique(data.source).tolist():
        members = torch.nonzero(data.source == s).flatten()
        tr, ho = split_holdout(len(members), fraction, seed)
        parts.append((members[tr], members[ho]))
    return torch.cat([p[0] for p in parts]).sort().values, torch.cat([p[1] for p in parts]).sort().values


def fit_subset(train_set: ImageSet) -> torch.Tensor:
    """The (at most ``FIT_IMAGES``) training normals an evaluation Gaussian is fitted on; fixed per set."""
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(7))[:FIT_IMAGES]
    return train_set.images[order]


def evaluation_sets(train_set: ImageSet, holdout: ImageSet, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit images, pasted copies of the held-out normals) of a run with this seed: fixed, so every evaluation
    of the run, and any later check of its model file, sees the same ones."""
    return fit_subset(train_set), pasted_copies(holdout, AnatPaste(), seed=seed + 12345)


@dataclass
class LabelFreeCheck:
    """A run's fixed label-free evaluation: how well the network separates held-out normals from their pasted
    copies, by the Gaussian score on the embedding (what selects) and by the pretext head (what it learnt)."""

    fit: torch.Tensor  # uint8 training normals the Gaussian is fitted on
    normals: torch.Tensor  # uint8 held-out normals
    pasted: torch.Tensor  # uint8 pasted copies of them
    norm: tuple[float, float] = (NORM_MEAN, NORM_STD)  # the run's input normalisation (mean, std)

    @classmethod
    def of(
        cls, train_set: ImageSet, holdout: ImageSet, seed: int, norm: tuple[float, float] = (NORM_MEAN, NORM_STD)
    ) -> LabelFreeCheck:
        fit, pasted = evaluation_sets(train_set, holdout, seed)
        return cls(fit, holdout.images, pasted, norm)

    def __call__(self, net: AnatPasteNet) -> tuple[float, float]:
        """(synthetic AUC, classifier AUC) of ``net``; the evaluation images are embedded once for both."""
        sets = (self.fit, self.normals, self.pasted)
        fit_emb, e0, e1 = (extract(net.encoder, x, *self.norm)[0] for x in sets)
        return gaussian_auc(fit_emb, e0, e1), classifier_auc(net, e0, e1)


def detector_synthetic_auc(det: Detector, data: ImageSet, holdout_fraction: float, seed: int) -> float:
    """The label-free selection figure of a loaded model file as stored (int8 weights included), on the
    held-out normals of a run over ``data`` with this seed: comparable across model files trained on the same
    data."""
    train_idx, hold_idx = holdout_split(data, holdout_fraction, seed)
    holdout = data.subset(hold_idx)
    fit, pasted = evaluation_sets(data.subset(train_idx), holdout, seed)
    return synthetic_auc(det.encoder, fit, holdout.images, pasted, det.mean, det.std)
