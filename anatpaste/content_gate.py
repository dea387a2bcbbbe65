"""Content check of the input gate: does the picture hold lung fields at all?

The lung segmentation (:mod:`anatpaste.segment`) never returns an empty mask: when it finds no lung it
mirrors one side or falls back to a fixed prior, because the paste augmentation needs a region. Here the
same method runs without those fallbacks, so "found nothing" becomes visible.

Finding no lung field *flags* the input; it does not refuse it. Measured with ``bench/input_gate.py``
(docs/input-gate.md): the finding catches most non-chest pictures that get past the header and reader
checks, but the few real frontal films it catches (0.15 %) are all films whose lungs are white from
pneumonia, the very films a triage must not drop. ``strict=True`` refuses instead, for callers who want it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anatpaste.errors import NotAChestRadiographError
from anatpaste.segment.lungs import MIN_FRACTION, WORK_SIDE, _improved, _to_work, _validate


@dataclass(frozen=True)
class LungFields:
    """What the unaided segmentation found, as fractions of the working image."""

    left: float  # area of the lung field found in the left half of the image
    right: float  # same, right half
    darker: float  # mean grey of the central band minus mean grey inside the lung fields (> 0: lungs darker)

    @property
    def total(self) -> float:
        return self.left + self.right


def lung_fields(pixels: np.ndarray) -> LungFields:
    """Segment without the mirror and prior fallbacks and measure the lung fields found."""
    arr = _validate(pixels)
    work = _to_work(arr)
    if float(work.max()) <= 0.0:
        return LungFields(0.0, 0.0, 0.0)
    scale = float(np.sqrt(work.size)) / WORK_SIDE
    mask = _improved(work, scale, mirror=False)
    h, w = mask.shape
    left = float(mask[:, : w // 2].sum()) / mask.size
    right = float(mask[:, w // 2 :].sum()) / mask.size
    if not mask.any():
        return LungFields(left, right, 0.0)
    band = work[h // 5 : 4 * h // 5, 2 * w // 5 : 3 * w // 5]
    return LungFields(left, right, float(band.mean() - work[mask].mean()))


def content_flags(fields: LungFields) -> list[str]:
    """The reasons (see :data:`anatpaste.errors.NOT_A_CHEST_REASONS`) this content is doubtful; [] if none."""
    return ["no_lungs"] if fields.total < MIN_FRACTION else []


def check_chest_content(pixels: np.ndarray, source: str, *, strict: bool = False) -> list[str]:
    """Measure the lung fields and return the content flags (``["no_lungs"]`` or ``[]``).

    Args:
        pixels: the radiograph's (H, W) pixels.
        source: the file name, for the message.
        strict: raise instead of returning a flag.

    Raises:
        NotAChestRadiographError: only with ``strict``, when a flag is raised (reason ``no_lungs``).
    """
    fields = lung_fields(pixels)
    flags = content_flags(fields)
    if flags and strict:
        raise NotAChestRadiographError(
            f"{source}: not scored: no lung field found (lung area {fields.total:.1%} of the image); not a chest "
            "radiograph, or both lungs entirely opaque", reason="no_lungs", detail=f"{fields.total:.4f}",
        )
    return flags
