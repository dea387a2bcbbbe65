"""Label-free model selection: how well do embeddings separate held-out normals from their pasted copies?

No abnormal image is involved: the "anomalies" are AnatPaste pastes into normals the network never trained
on, drawn with a fixed seed so every evaluation of a run sees the same ones.
"""

from __future__ import annotations

import torch
from sklearn.metrics import roc_auc_score

from anatpaste.data import ImageSet
from anatpaste.features import extract
from anatpaste.model import AnatPasteNet
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.paste import AnatPaste
from anatpaste.score import GaussianScorer


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
