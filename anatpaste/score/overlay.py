"""PNG overlays for people: the radiograph with the heatmap in colour and the lung mask outlined."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy import ndimage


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Map [0, 1] to an RGB "hot" ramp (black → red → yellow → white) as float (H, W, 3)."""
    v = np.clip(values, 0, 1)[..., None]
    return np.clip(np.concatenate([3 * v, 3 * v - 1, 3 * v - 2], -1), 0, 1)


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray | None,
    lung_mask: np.ndarray | None,
    heat_max: float,
    heat_min: float | None = None,
    opacity: float = 0.5,
    coloured: bool = True,
) -> np.ndarray:
    """uint8 RGB (H, W, 3): grey image, heatmap blended where it exceeds ``heat_min``, lung outline in cyan.

    ``heat_max`` is the model's ``display_max`` (99th percentile of held-out normals' heat), so by default
    colour starts there and saturates at twice it: a normal film shows almost no colour. ``coloured`` False
    (``ScoreResult.heatmap_coloured`` of a film below the threshold) draws no heat at all.
    """
    rgb = np.repeat(np.clip(image, 0, 1)[..., None], 3, -1)
    if heatmap is not None and coloured:
        lo = heat_min if heat_min is not None else heat_max
        hi = 2 * heat_max if heat_min is None else heat_max
        norm = (heatmap - lo) / max(hi - lo, 1e-6)
        a = opacity * np.clip(norm, 0, 1)[..., None]
        rgb = rgb * (1 - a) + heat_colours(norm) * a
    if lung_mask is not None:
        edge = lung_mask & ~ndimage.binary_erosion(lung_mask, iterations=max(1, min(image.shape) // 256))
        rgb[edge] = (0.0, 1.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Save a uint8 grey/RGB array or a bool mask (as 0/255) as PNG."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path)
