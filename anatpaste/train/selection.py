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
from anatpaste.paste import AnatPaste
from anatpaste.score import GaussianScorer


def pasted_copies(images: ImageSet, paster: AnatPaste, seed: int) -> torch.Tensor:
    """uint8 pasted copies of ``images`` with a fixed draw (the same at every call)."""
    g = torch.Generator().manual_seed(seed)
    x = images.images.float() / 255.0
    out = paster(x, images.lungs, generator=g)
    return torch.round(out * 255.0).to(torch.uint8)


def synthetic_auc(
    net: AnatPasteNet,
    fit_images: torch.Tensor,
    normals: torch.Tensor,
    pasted: torch.Tensor,
    mean: float,
    std: float,
) -> tuple[float, float]:
    """ROC AUCs for held-out normals vs their pasted copies.

    Returns:
        (Gaussian AUC, classifier AUC): the first scores with the Mahalanobis distance to a Gaussian fitted on
        ``fit_images`` (what is shipped, so it drives selection); the second with the pretext head's
        probability of "pasted" (the direct measure of what the network learnt).
    """
    fit_emb, _ = extract(net.encoder, fit_images, mean, std)
    gauss = GaussianScorer.fit(fit_emb)
    e0, e1 = extract(net.encoder, normals, mean, std)[0], extract(net.encoder, pasted, mean, std)[0]
    labels = [0] * len(e0) + [1] * len(e1)
    g_auc = roc_auc_score(labels, torch.cat([gauss.score(e0), gauss.score(e1)]).numpy())
    was_training = net.training
    net.eval()
    with torch.no_grad():
        dev = next(net.parameters()).device
        logits = net.classifier(net.head(torch.cat([e0, e1]).to(dev)))
        p_pasted = torch.softmax(logits.float(), 1)[:, 1].cpu().numpy()
    net.train(was_training)
    return float(g_auc), float(roc_auc_score(labels, p_pasted))
