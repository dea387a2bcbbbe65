"""Read a PNG or JPEG radiograph with Pillow."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from anatpaste.errors import (
    ImageTooLargeError,
    RadiographError,
    UnreadableImageError,
    UnsupportedImageError,
)
from anatpaste.image import as_unit_image
from anatpaste.io.grey import colour_to_grey
from anatpaste.io.radiograph import Radiograph

# Pillow format names this reader decodes (MPO is how Pillow names a JPEG with a multi-picture header).
RASTER_FORMATS = ("PNG", "JPEG", "MPO")

_GREY_MODES = frozenset({"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def read_raster(path: str | os.PathLike, *, max_pixels: int) -> Radiograph:
    """Read a single-frame grey PNG or JPEG.

    Accepts 8- and 16-bit grey, grey with alpha, grey palettes, and RGB(A) whose channels agree.
    The pixel count is checked from the header before anything is decoded (decompression bombs),
    and an EXIF orientation is applied.

    Args:
        path: the image file.
        max_pixels: largest accepted width x height.

    Returns:
        The radiograph, with ``spacing`` and ``modality`` None.

    Raises:
        UnreadableImageError: not a PNG/JPEG Pillow can decode, or truncated/corrupt.
        UnsupportedImageError: several frames, or a colour picture.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        ImageTooSmallError: a side shorter than the image contract allows.
    """
    try:
        with Image.open(path, formats=RASTER_FORMATS) as im:
            fmt = (im.format or "").lower()
            width, height = im.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                )
            n_frames = int(getattr(im, "n_frames", 1))
            if n_frames > 1:
                raise UnsupportedImageError(f"{fmt.upper()} has {n_frames} frames; expected a single 2-D radiograph")
            mode = im.mode
            # exif_transpose decodes the image (or returns a loaded copy when orientation is absent).
            oriented = ImageOps.exif_transpose(im)
            pixels = _to_grey_array(oriented if oriented is not None else im, os.fspath(path))
    except RadiographError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path}: {exc}") from exc
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, ... on bad data
        raise UnreadableImageError(f"{path}: cannot decode image: {exc}") from exc

    unit = as_unit_image(pixels)
    meta = {
        "format": "jpeg" if fmt == "mpo" else fmt,
        "mode": mode,
        "Rows": str(unit.shape[0]),
        "Columns": str(unit.shape[1]),
    }
    return Radiograph(pixels=unit, spacing=None, source=os.fspath(path), modality=None, meta=meta)


def _to_grey_array(im: Image.Image, source: str) -> np.ndarray:
    """Return the decoded image as a 2-D array, refusing real colour."""
    mode = im.mode
    if mode in _GREY_MODES:
        return np.asarray(im)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0))
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        return colour_to_grey(np.asarray(im), 255, source)
    # Palettes (P, PA), CMYK, YCbCr, LAB, HSV: let Pillow map them to RGB, then test for grey.
    return colour_to_grey(np.asarray(im.convert("RGB")), 255, source)
