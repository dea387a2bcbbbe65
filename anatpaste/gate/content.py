"""Content check of the input gate: lung fields found at all, the right way up, with the right grey scale?

The lung segmentation (:mod:`anatpaste.segment`) never returns an empty mask: when it finds no lung it
mirrors one side or falls back to a fixed prior, because the paste augmentation needs a region. Here the
same method runs without those fallbacks, so "found nothing" becomes visible, and the lung fields it finds
are measured (docs/input-gate.md has the rules and the figures of ``bench/input_gate.py``):

* ``no_lungs`` (flag): no lung field, or fields hardly darker than the mediastinum. Flagged, not refused: the
  few real frontal films it catches are films whose lungs are white from pneumonia, the very films a triage
  must not drop. ``strict=True`` refuses instead.
* ``inverted`` (fixed, with a warning): the fields found are brighter than the mediastinum, or the picture's
  own fields are doubtful (none, or hardly darker than the mediastinum) while its inverted picture holds a
  field on each side as dark as 95 % of real films' lungs. The picture is re-inverted and scored (a MONOCHROME1
  header on MONOCHROME2 pixels, a negative exported the wrong way round). A Shepp-Logan phantom or a
  white-lung film inverted shows no such fields, so it stays flagged ``no_lungs``.
* orientation (a *suspicion* here): lung fields wider than tall in a picture more symmetric top-bottom than
  left-right (turned by 90 degrees), or a picture hardly brighter under the lung fields (the abdomen) than
  over them (upside down). Geometry alone would refuse too many real films, so the model
  decides (:func:`anatpaste.gate.familiarity.check_orientation`): refused only if it finds the picture turned
  back far more familiar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from anatpaste.errors import NotAChestRadiographError
from anatpaste.image import checked_grey
from anatpaste.segment.lungs import MIN_FRACTION, WORK_SIDE, _improved, _to_work

# Limits set on the cues of the 2,756 real frontal films of ../shared/data as a whole (their percentiles:
# bench/results/input_gate.json, real_frontal_films.all.cue_percentiles); the suspicions are loose on purpose.
MIN_DARKER = 0.05  # lungs at least this much darker than the central band (grey 0..1; real p0.1: 0.034)
INVERTED_DARKER = 0.17  # real p5 of the same: the inverted picture of a doubtful one must do as well
TURNED_SYMMETRY = 0.0  # left-right minus top-bottom mirror correlation below this (real p5: -0.05) ...
TURNED_TALL = 1.0  # ... and the smaller field's height / width below this (real p5: 1.01): maybe turned
UPSIDE_DOWN_BELOW = 0.05  # grey under the fields minus grey over them below this (real p5: 0.03): maybe upside down
SYMMETRY_SIDE = 64  # the mirror correlations run on a 64x64 copy: the layout, not the detail


@dataclass(frozen=True)
class LungFields:
    """What the unaided segmentation found, as fractions of the working image."""

    left: float  # area of the lung field found in the left half of the image
    right: float  # same, right half
    darker: float  # mean grey of the central band minus mean grey inside the lung fields (> 0: lungs darker)
    tall: float = float("nan")  # height / width (as fractions of the image) of the smaller of the two largest fields
    below_minus_above: float = float("nan")  # grey of a band under the fields minus a band over them

    @property
    def total(self) -> float:
        return self.left + self.right


@dataclass
class ContentCheck:
    """The verdict of :func:`check_content`: what to score and what to tell the reader."""

    pixels: np.ndarray  # the radiograph to score: the input, or the input re-inverted (``fixed``)
    flags: list[str] = field(default_factory=list)  # reasons the score may mean nothing (scored anyway)
    fixed: list[str] = field(default_factory=list)  # what was corrected before scoring ("inverted")
    fields: LungFields | None = None
    symmetry: float = float("nan")  # left-right minus top-bottom mirror correlation
    suspect: str | None = None  # "upside down" / "turned by 90 degrees": for the model to decide
    mask: np.ndarray | None = None  # the lung fields found (bool, on the ~256-px working image of ``pixels``)
    measures: dict[str, float] = field(default_factory=dict)  # the model-side cues (familiarity.model_checks)

    @property
    def warnings(self) -> list[str]:
        return [WARNINGS[r] for r in self.flags + self.fixed]


WARNINGS = {
    "no_lungs": "no lung field found; the score may mean nothing (not a chest radiograph, or both lungs opaque)",
    "inverted": "the grey scale was inverted (lungs brighter than the mediastinum): re-inverted, then scored",
    "unfamiliar": "far outside anything the model saw in training: the score may mean nothing",
    "unusual_layout": "laid out unlike the frontal chest films the model learnt from (a crop, another view or "
    "body part, no radiograph?): the score may mean nothing",
    "unusual_texture": "its texture is unlike the films the model learnt from (a photograph, a CT or MR slice, a "
    "drawing?): the score may mean nothing",
    "partial_film": "far wider than tall or taller than wide, unlike any film format (a part cut out of a film?): "
    "the score may mean nothing",
}


def _segment(work: np.ndarray) -> np.ndarray:
    if float(work.max()) <= 0.0:
        return np.zeros(work.shape, dtype=bool)
    return _improved(work, float(np.sqrt(work.size)) / WORK_SIDE, mirror=False)


def _tall(mask: np.ndarray) -> float:
    """Height / width (as fractions of the image) of the smaller-shaped of the two largest fields."""
    labels, n = ndi.label(mask)
    if n == 0:
        return float("nan")
    h, w = mask.shape
    boxes = ndi.find_objects(labels)
    largest = np.argsort(np.bincount(labels.ravel())[1:])[::-1][:2]
    return min(
        ((boxes[i][0].stop - boxes[i][0].start) / h) / ((boxes[i][1].stop - boxes[i][1].start) / w) for i in largest
    )


def _fields(work: np.ndarray, mask: np.ndarray) -> LungFields:
    h, w = mask.shape
    left = float(mask[:, : w // 2].sum()) / mask.size
    right = float(mask[:, w // 2 :].sum()) / mask.size
    if not mask.any():
        return LungFields(left, right, 0.0)
    band = work[h // 5 : 4 * h // 5, 2 * w // 5 : 3 * w // 5]
    tall = _tall(mask)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    d = max(2, h // 10)
    above, below = work[max(0, y0 - d) : y0, x0:x1], work[y1 : y1 + d, x0:x1]
    # a field touching the top or bottom edge leaves no band there: nothing to compare, no finding
    bma = float(below.mean() - above.mean()) if above.size and below.size else float("nan")
    return LungFields(left, right, float(band.mean() - work[mask].mean()), tall, bma)


def mirror_symmetry(work: np.ndarray) -> float:
    """Correlation of the picture with its left-right mirror minus that with its top-bottom mirror.

    A frontal chest is roughly left-right symmetric and not top-bottom symmetric (> 0); turned by 90
    degrees the two swap.
    """
    small = np.asarray(Image.fromarray(work).resize((SYMMETRY_SIDE, SYMMETRY_SIDE), Image.Resampling.BILINEAR))
    z = (small - small.mean()) / (float(small.std()) + 1e-9)
    return float((z * z[:, ::-1]).mean() - (z * z[::-1]).mean())


def lung_fields(pixels: np.ndarray) -> LungFields:
    """Segment without the mirror and prior fallbacks and measure the lung fields found."""
    work = _to_work(checked_grey(pixels))
    return _fields(work, _segment(work))


def _convincing(fields: LungFields) -> bool:
    """A lung field on each side, as much darker than the mediastinum as in 95 % of real films."""
    return min(fields.left, fields.right) >= MIN_FRACTION / 2 and fields.darker >= INVERTED_DARKER


def suspected_orientation(fields: LungFields, symmetry: float) -> str | None:
    """``"turned by 90 degrees"``, ``"upside down"`` or None, from the module docstring's geometry."""
    if fields.total < MIN_FRACTION:
        return None  # nothing measured: the no_lungs flag speaks instead
    if symmetry < TURNED_SYMMETRY and fields.tall < TURNED_TALL:
        return "turned by 90 degrees"
    if fields.below_minus_above < UPSIDE_DOWN_BELOW:
        return "upside down"
    return None


# The ways back to upright of a suspected orientation (a film turned either way by 90 degrees).
TURN_BACK: dict[str, tuple[Callable[[np.ndarray], np.ndarray], ...]] = {
    "upside down": (lambda a: a[::-1], lambda a: a[::-1, ::-1]),  # mirrored top-bottom, or turned by 180
    "turned by 90 degrees": (np.rot90, lambda a: np.rot90(a, 3)),
}


def check_content(pixels: np.ndarray, source: str, *, strict: bool = False) -> ContentCheck:
    """Run the content rules of the module docstring on one radiograph (no model needed).

    Args:
        pixels: the radiograph's (H, W) pixels, brighter = denser ([0, 1] float32 as the readers give).
        source: the file name, for the messages.
        strict: refuse instead of flagging ``no_lungs``.

    Returns:
        What to score (``pixels``, re-inverted if ``"inverted"`` is in ``fixed``), the flags, and a suspected
        orientation for :func:`anatpaste.gate.familiarity.check_orientation`.

    Raises:
        NotAChestRadiographError: reason ``no_lungs``, only with ``strict``.
    """
    arr = checked_grey(pixels)
    work = _to_work(arr)
    mask = _segment(work)
    fields = _fields(work, mask)
    found = fields.total >= MIN_FRACTION
    inverted = found and fields.darker < 0
    if not inverted and content_flags(fields):  # doubtful: is the grey scale reversed?
        inverted = _convincing(_fields(1.0 - work, _segment(1.0 - work)))
    if inverted:
        work = 1.0 - work
        mask = _segment(work)
        fields = _fields(work, mask)
        arr = arr.max() + arr.min() - arr  # the same grey range, the other way round
    symmetry = mirror_symmetry(work)
    flags = content_flags(fields)
    if flags and strict:
        raise NotAChestRadiographError(
            f"{source}: not scored: no lung field found (lung area {fields.total:.1%} of the image, "
            f"{fields.darker:+.2f} darker than the mediastinum); not a chest radiograph, or both lungs "
            "entirely opaque",
            reason="no_lungs",
            detail=f"{fields.total:.4f}",
        )
    fixed = ["inverted"] if inverted else []
    return ContentCheck(arr, flags, fixed, fields, symmetry, suspected_orientation(fields, symmetry), mask)


def content_flags(fields: LungFields) -> list[str]:
    """The ``no_lungs`` rule on measured fields: none found, or hardly darker than the mediastinum."""
    return [] if fields.total >= MIN_FRACTION and fields.darker >= MIN_DARKER else ["no_lungs"]


def check_chest_content(pixels: np.ndarray, source: str, *, strict: bool = False) -> list[str]:
    """The flags of :func:`check_content` (``["no_lungs"]`` or ``[]``), for callers that only flag."""
    return check_content(pixels, source, strict=strict).flags
