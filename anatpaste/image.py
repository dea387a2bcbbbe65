"""The one image contract inside the core: float32, shape (H, W), values in [0, 1], higher = brighter.

Every reader returns this, every later step (segment, paste, score) assumes it, and
:func:`as_unit_image` is the one place that enforces it.
"""

from __future__ import annotations

import numpy as np

from anatpaste.errors import ImageTooSmallError, UnsupportedImageError

MIN_SIDE = 32  # smaller than this cannot hold a chest radiograph worth scoring


def checked_grey(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as float32 (H, W) after the contract's checks, values untouched (a blank image passes: the
    segmentation answers it with its prior, the scorer refuses it in :func:`as_unit_image`).

    Raises:
        UnsupportedImageError: not 2-D, not real-valued, or not finite.
        ImageTooSmallError: a side shorter than ``MIN_SIDE``.
    """
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        raise UnsupportedImageError(f"expected a 2-D grey image, got an array of shape {arr.shape}")
    if min(arr.shape) < MIN_SIDE:
        raise ImageTooSmallError(f"image is {arr.shape[0]}x{arr.shape[1]} pixels; need at least {MIN_SIDE} per side")
    if arr.dtype.kind not in "biuf":  # bool, int, unsigned, float
        raise UnsupportedImageError(f"expected a real-valued grey image, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise UnsupportedImageError("image holds NaN or infinite values")
    return arr


def as_unit_image(pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` as a contiguous float32 (H, W) array scaled to [0, 1] by its own min and max.

    Raises:
        UnsupportedImageError: not 2-D, not real-valued, not finite, or blank.
        ImageTooSmallError: a side shorter than ``MIN_SIDE``.
    """
    arr = checked_grey(pixels)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        raise UnsupportedImageError("image is blank (every pixel has the same value)")
    return np.ascontiguousarray((arr - lo) / (hi - lo), dtype=np.float32)
