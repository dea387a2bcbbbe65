"""Anomaly heatmap: PaDiM-style Gaussians per spatial location on the encoder's layer2 + layer3 maps.

The paper has no localisation. Here every location of the (H/16, W/16) grid gets its own Gaussian over a
fixed random subset of the concatenated layer2 (pooled) and layer3 channels, fitted on the normal
training images; the map is the per-location Mahalanobis distance, upsampled and smoothed. The random
channel choice is made once at fit time and stored with the model (it must travel with the statistics).

Calibrated per location (:mod:`anatpaste.score.heat_calibration`): each location's distance is divided by
that location's 95th percentile on normals the Gaussians were not fitted on, so 1.0 means "as unusual here as
the 5 % most unusual normals" everywhere (raw distances are larger at the film's edges and the abdomen,
where normals vary most, which drew red blobs there). Older model files have no scale and show raw distances.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_grid(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate layer2 (average-pooled to layer3's grid) and layer3: (N, 384, h, w)."""
    l3 = maps["layer3"].float()
    l2 = F.adaptive_avg_pool2d(maps["layer2"].float(), (l3.shape[-2], l3.shape[-1]))
    return torch.cat([l2, l3], 1)


class HeatmapScorer:
    """Per-location mean and precision over ``channels`` of :func:`feature_grid`.

    Args:
        channels: indices of the kept feature channels (D,).
        mean: (L, D) per-location means, L = h·w.
        precision: (L, D, D) per-location inverse covariances.
        grid: (h, w) of the feature grid.
    """

    def __init__(
        self,
        channels: torch.Tensor,
        mean: torch.Tensor,
        precision: torch.Tensor,
        grid: tuple[int, int],
        scale: torch.Tensor | None = None,
    ):
        self.channels = channels.long()
        self.mean = mean.float()
        self.precision = precision.float()
        self.grid = (int(grid[0]), int(grid[1]))
        self.scale = scale.float().view(self.grid) if scale is not None else None

    @classmethod
    def fit(
        cls, grids: torch.Tensor, n_channels: int = 64, shrink: float = 0.01, generator: torch.Generator | None = None
    ) -> HeatmapScorer:
        """Fit on (N, C, h, w) feature grids of normal images; ``shrink`` regularises each covariance."""
        n, c, h, w = grids.shape
        if n < 2:
            raise ValueError("need at least 2 normal images to fit the heatmap Gaussians")
        channels = torch.randperm(c, generator=generator)[: min(n_channels, c)].sort().values
        x = grids[:, channels].float().permute(2, 3, 0, 1).reshape(h * w, n, -1)  # (L, N, D)
        mean = x.mean(1)
        xc = x - mean.unsqueeze(1)
        cov = xc.transpose(1, 2) @ xc / (n - 1)
        d = cov.shape[-1]
        cov = cov + shrink * torch.eye(d).expand_as(cov)
        precision = torch.linalg.inv(cov.double()).float()
        return cls(channels, mean, precision, (h, w))

    def distance_grid(self, grids: torch.Tensor) -> torch.Tensor:
        """Per-location Mahalanobis distances (N, h, w)."""
        n, _, h, w = grids.shape
        if (h, w) != self.grid:
            raise ValueError(f"feature grid {h}x{w} does not match the fitted grid {self.grid}")
        x = grids[:, self.channels].float().permute(0, 2, 3, 1).reshape(n, h * w, -1) - self.mean
        m = torch.einsum("nld,lde,nle->nl", x, self.precision, x)
        return torch.sqrt(m.clamp_min(0)).view(n, h, w)

    def heatmap(self, grids: torch.Tensor, out_hw: tuple[int, int], sigma_px: float = 4.0) -> torch.Tensor:
        """Maps upsampled to ``out_hw`` and Gaussian-smoothed: (N, H, W) float32 (see :meth:`render`)."""
        return self.render(self.distance_grid(grids), out_hw, sigma_px)

    def render(self, distances: torch.Tensor, out_hw: tuple[int, int], sigma_px: float = 4.0) -> torch.Tensor:
        """(N, h, w) distances → divided by the per-location scale (when fitted), upsampled, smoothed."""
        d = distances if self.scale is None else distances / self.scale
        up = F.interpolate(d.unsqueeze(1), size=out_hw, mode="bilinear", align_corners=False)
        return _smooth(up, sigma_px * min(out_hw) / 256.0)[:, 0]

    def with_scale(self, scale: torch.Tensor) -> HeatmapScorer:
        return HeatmapScorer(self.channels, self.mean, self.precision, self.grid, scale)

    def state_dict(self) -> dict[str, torch.Tensor | list[int]]:
        out: dict[str, torch.Tensor | list[int]] = {
            "channels": self.channels,
            "mean": self.mean,
            "precision": self.precision,
            "grid": list(self.grid),
        }
        if self.scale is not None:
            out["location_scale"] = self.scale
        return out

    @classmethod
    def from_state_dict(cls, state: dict) -> HeatmapScorer:
        return cls(
            state["channels"], state["mean"], state["precision"], tuple(state["grid"]), state.get("location_scale")
        )


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma < 0.5:
        return x
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
