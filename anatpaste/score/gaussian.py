"""Image-level anomaly score: Mahalanobis distance of an L2-normalised embedding to the normals' Gaussian."""

from __future__ import annotations

import torch
from scipy.linalg import pinvh
from sklearn.covariance import ledoit_wolf


class GaussianScorer:
    """Mean + Ledoit-Wolf covariance of L2-normalised embeddings; score = Mahalanobis distance.

    Example:
        >>> import torch
        >>> g = GaussianScorer.fit(torch.randn(200, 8))
        >>> s = g.score(torch.randn(5, 8)); tuple(s.shape)
        (5,)
    """

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor) -> None:
        self.mean = mean.float()
        self.precision = precision.float()

    @staticmethod
    def normalise(emb: torch.Tensor) -> torch.Tensor:
        """L2-normalise each row (as the paper does before fitting)."""
        return torch.nn.functional.normalize(emb.float(), dim=1)

    @classmethod
    def fit(cls, embeddings: torch.Tensor) -> GaussianScorer:
        """Fit on (N, D) embeddings of normal images (N ≥ 2)."""
        if embeddings.ndim != 2 or embeddings.shape[0] < 2:
            raise ValueError(f"need (N >= 2, D) embeddings, got {tuple(embeddings.shape)}")
        x = cls.normalise(embeddings).double().cpu().numpy()
        cov, _ = ledoit_wolf(x)
        # The shrunk covariance is usually positive definite, and then a Cholesky inverse gives what
        # scikit-learn's pinvh would (its eigendecomposition took seconds per fit on a busy 2-core machine;
        # calibration fits 20 per run). Without shrinkage (e.g. dead channels of an untrained network) it can
        # be singular: then the pseudo-inverse, as scikit-learn does.
        c = torch.from_numpy(cov)
        chol, info = torch.linalg.cholesky_ex(c)
        precision = torch.cholesky_inverse(chol) if int(info) == 0 else torch.from_numpy(pinvh(cov))
        return cls(torch.from_numpy(x.mean(0)).float(), precision.float())

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance (N,) of each embedding; higher = more anomalous."""
        d = self.normalise(embeddings).cpu() - self.mean
        m = torch.einsum("nd,de,ne->n", d, self.precision, d)
        return torch.sqrt(m.clamp_min(0))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "precision": self.precision}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> GaussianScorer:
        return cls(state["mean"], state["precision"])
