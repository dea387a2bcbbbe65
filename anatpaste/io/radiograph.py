"""The record every reader returns: pixels in the core's image contract plus a little provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# eq=False: a generated __eq__/__hash__ would compare/hash the ndarray and raise.
@dataclass(frozen=True, eq=False)
class Radiograph:
    """One 2-D grey radiograph, ready for the rest of the pipeline.

    Attributes:
        pixels: float32 (H, W) in [0, 1], higher = brighter (the MONOCHROME2 sense), as returned by
            :func:`anatpaste.image.as_unit_image`.
        spacing: (row, col) pixel spacing in mm, or None when absent or invalid (e.g. "0.000").
        source: the path the image was read from, or a short name.
        modality: the DICOM Modality (CR, DX, ...), or None for raster files.
        meta: small JSON-safe string fields (UIDs, photometric interpretation, bit depth, size,
            ``format``); never patient-identifying tags.
    """

    pixels: np.ndarray
    spacing: tuple[float, float] | None
    source: str
    modality: str | None
    meta: dict[str, str] = field(default_factory=dict)
