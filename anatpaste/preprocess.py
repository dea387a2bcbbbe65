"""From a radiograph in the image contract to the network's input grid, identically for training and scoring."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Fixed input normalisation (stored in every model file, so a model never depends on this module's values).
NORM_MEAN = 0.5
NORM_STD = 0.25


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a float32 (H, W) [0, 1] image to (size, size), antialiased, aspect ratio not kept.

    ZhangLab's images were squashed to 224² the same way, so scoring uses the training geometry.
    """
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    out = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR, reducing_gap=None
    )
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise [0, 1] to uint8: the training set is held in uint8, so scoring quantises the same way."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def model_grid(image: np.ndarray, size: int) -> np.ndarray:
    """A radiograph in the image contract → the uint8 (size, size) grid a model sees (training and scoring)."""
    return to_uint8(resize_square(image, size))
