"""Turn a colour-encoded image that is really grey (R = G = B up to codec noise) into one channel."""

from __future__ import annotations

import numpy as np

from anatpaste.errors import UnsupportedImageError

# Fraction of full scale two channels may differ by and still count as grey: decoding a grey
# JPEG that was stored as YCbCr with subsampled chroma leaves differences of a level or two.
GREY_TOLERANCE = 4 / 255
# Fraction of pixels allowed beyond the tolerance (codec ringing near edges, a tiny coloured mark).
GREY_OUTLIER_FRACTION = 0.001


def colour_to_grey(rgb: np.ndarray, full_scale: float, source: str = "") -> np.ndarray:
    """Return the channel mean of an (H, W, >=3) colour array whose channels agree.

    Args:
        rgb: (H, W, C) array with C >= 3; channels beyond the third (alpha, padding) are ignored.
        full_scale: the largest value the encoding can hold (255 for 8 bits), to scale the tolerance.
        source: the file name, to prefix error messages with.

    Returns:
        float32 (H, W) array of the mean of the first three channels.

    Raises:
        UnsupportedImageError: not (H, W, >=3), or the channels clearly differ (a colour picture).
    """
    prefix = f"{source}: " if source else ""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise UnsupportedImageError(f"{prefix}expected an (H, W, 3) colour array, got shape {rgb.shape}")
    rgb = rgb[..., :3]
    # float32 before subtracting: signed inputs could overflow their own dtype.
    spread = rgb.max(axis=2).astype(np.float32) - rgb.min(axis=2).astype(np.float32)
    tolerance = GREY_TOLERANCE * float(full_scale)
    n_colour = int(np.count_nonzero(spread > tolerance))
    if n_colour > GREY_OUTLIER_FRACTION * spread.size:
        raise UnsupportedImageError(
            f"{prefix}this is a colour image ({100 * n_colour / spread.size:.1f}% of pixels have channels "
            f"differing by more than {tolerance:.0f} levels, max {float(spread.max()):.0f}); "
            "a radiograph must be grey"
        )
    return rgb.mean(axis=2, dtype=np.float32)
