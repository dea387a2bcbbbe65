"""Make the heatmap mean the same everywhere on the film and stay where AnatPaste's anomalies live: the lungs.

Three pieces, all fitted on normals only:
- a per-location scale (each location's 95th percentile of normals' distances), so that a value of 1 is
  "as unusual here as the 5 % most unusual normals" whether the location is mid-lung or the film's edge;
- a lung window: the lung mask dilated by a margin (the pleura and the costophrenic angles belong to the
  finding) with a soft edge, outside which the map is zero;
- the display threshold: the 99th percentile, over held-out normals, of each film's highest windowed value,
  so about 1 normal film in 100 like the training ones shows any colour at all (test sets drift from
  their training normals, so 1 in 20 would show colour on many more).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from anatpaste.score.heatmap import HeatmapScorer
from anatpaste.score.source_quantile import highest_source_quantile

LOCATION_QUANTILE = 0.95
DISPLAY_QUANTILE = 0.99
LUNG_MARGIN = 0.04  # dilation, as a fraction of the film's shorter side
LUNG_EDGE = 0.03  # width of the soft edge beyond the margin, same unit
DISPLAY_HOW = (
    f"per-location scale: {LOCATION_QUANTILE:.0%} quantile of normals' distances; display threshold: "
    f"{DISPLAY_QUANTILE:.0%} quantile of normals' highest value inside the lung window (no abnormal labels)"
)
WINDOW_SIDE = 256  # the window is built at about this size and upsampled (distance transforms at 2k are slow)


def location_scale(distances: torch.Tensor) -> torch.Tensor:
    """(N, h, w) per-location distances of normals → (h, w) scale, their ``LOCATION_QUANTILE``."""
    return torch.quantile(distances.float(), LOCATION_QUANTILE, dim=0).clamp_min(1e-6)


def lung_window(lung: np.ndarray | torch.Tensor, out_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """Soft window in [0, 1] from a boolean lung mask (H, W): 1 within the dilated mask, falling to 0 over
    ``LUNG_EDGE``; (H, W), or ``out_hw`` when given, float32."""
    mask = torch.as_tensor(np.asarray(lung, dtype=bool)).float()
    h, w = mask.shape
    factor = max(1, min(h, w) // WINDOW_SIDE)
    small = F.avg_pool2d(mask[None, None], factor, ceil_mode=True)[0, 0] > 0.5 if factor > 1 else mask > 0.5
    side = min(small.shape)
    outside = ndimage.distance_transform_edt(~small.numpy())  # px from the mask, 0 inside
    ramp = 1.0 - (outside - LUNG_MARGIN * side) / max(LUNG_EDGE * side, 1.0)
    win = torch.from_numpy(np.clip(ramp, 0.0, 1.0).astype(np.float32))
    size = out_hw or (h, w)
    if tuple(win.shape) == tuple(size):
        return win
    return F.interpolate(win[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def windowed_maps(heat: HeatmapScorer, distances: torch.Tensor, lungs: torch.Tensor) -> torch.Tensor:
    """(N, S, S) maps of normals at the lung masks' size ``lungs`` (N, [1,] S, S), inside their windows."""
    lungs = lungs.reshape(lungs.shape[0], *lungs.shape[-2:]).bool()
    maps = heat.render(distances, (lungs.shape[-2], lungs.shape[-1]))
    return maps * torch.stack([lung_window(m.numpy()) for m in lungs])


def calibrate_heatmap(
    heat: HeatmapScorer, distances: torch.Tensor, lungs: torch.Tensor, source: torch.Tensor | None = None
) -> tuple[HeatmapScorer, float, list[dict[str, Any]]]:
    """(scorer with the per-location scale, display threshold, its per-source figures) from normals the
    Gaussians were not fitted on: their (N, h, w) ``distances`` and lung masks (N, [1,] S, S) at the model's
    input size. With ``source`` (N,), the display threshold is the highest per-source quantile, as the score's
    threshold is (:func:`anatpaste.score.source_quantile.highest_source_quantile`)."""
    scaled = heat.with_scale(location_scale(distances))
    peaks = windowed_maps(scaled, distances, lungs).flatten(1).amax(1)
    display, by_source = highest_source_quantile(peaks.numpy(), source, DISPLAY_QUANTILE)
    return scaled, display, by_source
