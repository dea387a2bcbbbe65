"""Bytes <-> arrays: the server's maps NRRD in (SimpleITK), a 16-bit grey PNG out (Pillow).

Both libraries ship with 3D Slicer's Python. SimpleITK reads NRRD only from a file, so the bytes go
through a temporary file; the header is checked first, because ITK would follow a ``data file:`` field
to any file on this computer that the server names.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass

import numpy as np


class ImageDecodeError(ValueError):
    """Bytes that are not a usable image of the expected kind."""


@dataclass(frozen=True)
class ResultMaps:
    """The server's result image split into its two maps, row 0 = top of the radiograph."""

    heatmap: np.ndarray  # float32 (H, W), Mahalanobis distance
    lung_mask: np.ndarray  # bool (H, W)
    spacing: tuple[float, float] | None  # (row, col) mm from the NRRD, for information only


@dataclass(frozen=True)
class NrrdImage:
    """An NRRD as SimpleITK reads it."""

    array: np.ndarray  # C order: NRRD's axes reversed, vector components last ("2 W H 1" -> (1, H, W, 2))
    spacing: tuple[float, ...]  # mm per image axis, fastest first (a vector axis is not an image axis)
    components: int  # 1, or the size of a "vector" axis


def read_nrrd(data: bytes) -> NrrdImage:
    """Decode an NRRD file held in memory (attached data; any encoding and type ITK reads).

    Raises:
        ImageDecodeError: not NRRD, detached data, or anything ITK cannot read (its reason is kept).
    """
    _check_nrrd_header(data)
    import SimpleITK as sitk  # here: the header rules above need no SimpleITK

    with tempfile.TemporaryDirectory(prefix="AnatPasteReview-") as folder:
        path = os.path.join(folder, "maps.nrrd")
        with open(path, "wb") as f:
            f.write(data)
        try:
            image = sitk.ReadImage(path)
        except RuntimeError as exc:  # ITK's text ends with teem's own reason, e.g. "fread got only ..."
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[-1].removeprefix("[nrrd] ") if lines else type(exc).__name__
            raise ImageDecodeError(f"the NRRD could not be read: {reason}") from exc
    spacing = tuple(float(s) for s in image.GetSpacing())
    return NrrdImage(sitk.GetArrayFromImage(image), spacing, image.GetNumberOfComponentsPerPixel())


def _check_nrrd_header(data: bytes) -> None:
    if not data.startswith(b"NRRD000"):
        raise ImageDecodeError("not an NRRD file (no NRRD000x magic)")
    end = min((i for i in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if i >= 0), default=-1)
    if end < 0:
        raise ImageDecodeError("NRRD header has no end (blank line missing)")
    for line in data[:end].decode("latin-1").splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("data file", "datafile"):
            raise ImageDecodeError("NRRD with detached data is not supported")


def read_result_maps(data: bytes, shape: tuple[int, int] | None = None) -> ResultMaps:
    """Split the server's ``2 W H 1`` maps NRRD (raw or gzip) into heatmap and lung mask.

    Args:
        data: the NRRD bytes (``output=image`` or the file part of ``output=all``).
        shape: (H, W) the score JSON announced; checked when given.

    Raises:
        ImageDecodeError: not the documented layout, or not the announced shape.
    """
    image = read_nrrd(data)
    array = image.array
    if array.ndim == 4 and array.shape[0] == 1 and array.shape[3] == 2:
        maps = array[0]
    elif array.ndim == 3 and array.shape[2] == 2:  # a writer that dropped the single slice
        maps = array
    else:
        raise ImageDecodeError(f"expected NRRD sizes '2 W H 1', got an array of shape {array.shape}")
    # (col, row) spacing: the first two image axes, after the component axis when it is no "vector" kind
    spatial = image.spacing if image.components == 2 else image.spacing[1:]
    heatmap = np.ascontiguousarray(maps[:, :, 0], dtype=np.float32)
    if shape is not None and tuple(heatmap.shape) != tuple(shape):
        raise ImageDecodeError(f"maps are {heatmap.shape[0]}x{heatmap.shape[1]}, the score says {shape[0]}x{shape[1]}")
    if not np.all(np.isfinite(heatmap)):
        raise ImageDecodeError("the heatmap holds NaN or infinite values")
    col, row = (spatial[0], spatial[1]) if len(spatial) >= 2 else (0.0, 0.0)
    return ResultMaps(heatmap, maps[:, :, 1] > 0.5, (row, col) if row > 0 and col > 0 else None)


def encode_png16(pixels: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of a 2-D array, min-max scaled, row 0 at the top.

    Used to send a radiograph that exists only in the scene (no file on disk) to the server.

    Raises:
        ValueError: not 2-D, empty, or not finite.
    """
    from PIL import Image

    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("image holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    scaled = np.zeros(a.shape) if hi <= lo else (a - lo) / (hi - lo)
    grey = np.round(scaled * 65535).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")  # uint16 -> mode I;16 -> a 16-bit grey PNG
    return buf.getvalue()
