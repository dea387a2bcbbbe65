"""Unsupervised threshold lung segmentation of frontal chest radiographs.

Both methods run on a *working image*: the input resampled so its short side is
``WORK_SIDE`` (256, the resolution the AnatPaste paper's constants refer to).  Every
structuring element and area threshold is written "in pixels at 256x256" and scaled with the
working image, and the mask is resampled back to the input shape with nearest neighbour, so
the result and the cost do not depend on the input size.

Methods:

* ``"anatpaste"``: the published recipe (Sato et al., AnatPaste), written out explicitly:
  CLAHE -> Otsu -> dark side -> opening 3x3 -> clear_border -> dilation 3x3 -> drop
  components < 400 px -> fill holes -> two largest components.
* ``"improved"`` (default): the same CLAHE/Otsu dark-region idea made robust to what breaks
  the recipe on real films (see :func:`_improved`): black letterbox padding and air outside
  the body, lungs joined to that air through dark soft tissue, picking air/bowel gas instead
  of a lung, and ragged masks around vessels and opacities.

Fallbacks: a lung side the improved method cannot find (or finds at < 40% of the other
lung's area) is completed with the other lung mirrored about the mediastinum; if the final
mask still covers less than ``MIN_FRACTION`` of the image,
:func:`prior_lungs` (two ellipses at typical lung positions) is returned instead, because
the paste augmentation needs a non-empty region.  Neither fallback learns from data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import exposure, filters, morphology, segmentation

from anatpaste.image import MIN_SIDE, checked_grey

WORK_SIDE = 256  # short side of the working image; the paper's pixel constants are at 256x256
MAX_WORK_LONG = 1024  # caps the working image of extreme aspect ratios so the cost stays bounded
MIN_FRACTION = 0.02  # a lung mask covering less of the image than this is not trusted
METHODS = ("improved", "anatpaste")
DEFAULT_METHOD = "improved"

AIR_LEVEL = 0.05  # near-black on the min-max scaled film: direct exposure (air) or letterbox padding
_SQUARE3 = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------- public API


def segment_lungs(image: np.ndarray, *, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Segment both lung fields of a frontal chest radiograph without any training.

    Args:
        image: (H, W) grey image, brighter = denser (the package contract: float32 in [0, 1];
            any real dtype and range is accepted and min-max scaled).  Any size with both
            sides >= 32 px and any aspect ratio.
        method: ``"improved"`` (default, best on the Montgomery/Shenzhen reference masks, see
            ``bench/segmentation.py``) or ``"anatpaste"`` (the published recipe).

    Returns:
        Boolean (H, W) lung mask.  Never empty: if the method finds less than
        ``MIN_FRACTION`` of the image, the anatomical prior :func:`prior_lungs` is returned.

    Raises:
        ValueError: unknown ``method``.
        UnsupportedImageError: not 2-D, not real-valued, or not finite (the contract: ``anatpaste.image``).
        ImageTooSmallError: a side shorter than ``anatpaste.image.MIN_SIDE`` (32 px).
    """
    if method not in METHODS:
        raise ValueError(f"unknown segmentation method {method!r}; choose one of {METHODS}")
    return _run(image, _anatpaste if method == "anatpaste" else _improved)


def _run(image: np.ndarray, method: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """The frame shared by every method: validate, work image, segment, fallback, resample back.

    ``method(work, scale)`` segments the working image; ``scale`` converts pixel constants
    given at 256x256.  Exposed privately so the benchmark can run ablation variants through
    exactly the same frame.
    """
    arr = checked_grey(image)
    work = _to_work(arr)
    scale = float(np.sqrt(work.size)) / WORK_SIDE  # 1.0 for a square working image
    h, w = arr.shape
    if float(work.max()) <= 0.0:  # blank input: nothing to threshold
        return prior_lungs((h, w))
    mask = method(work, scale)
    if mask.mean() < MIN_FRACTION:
        return prior_lungs((h, w))
    return _from_work(mask, arr.shape)


def prior_lungs(shape: tuple[int, int]) -> np.ndarray:
    """A fixed anatomical prior: two upright ellipses where the lungs of a frontal film sit.

    Centred at 45% of the height and 30% / 70% of the width, semi-axes 30% of the height by
    14% of the width (chosen from anatomy, not fitted to any masks).  It is the fallback when
    thresholding finds nothing usable and scales to any shape.

    Args:
        shape: (H, W) of the mask.

    Returns:
        Boolean (H, W) mask covering about 26% of the image.
    """
    return _prior_map(shape) >= np.exp(-0.5)


# ----------------------------------------------------------------------------- frame helpers


def _work_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape
    f = min(WORK_SIDE / min(h, w), MAX_WORK_LONG / max(h, w))
    return max(MIN_SIDE, round(h * f)), max(MIN_SIDE, round(w * f))


def _to_work(image: np.ndarray) -> np.ndarray:
    """Resample to the working shape (antialiased when shrinking) and min-max scale to [0, 1]."""
    wh, ww = _work_shape(image.shape)
    if (wh, ww) == image.shape:
        work = np.array(image, dtype=np.float32)
    else:
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
        # reducing_gap: a box pre-reduction first, so a 2k film costs about what a 512 one does
        work = np.array(pil.resize((ww, wh), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)
    lo, hi = float(work.min()), float(work.max())
    if hi > lo:
        work = (work - lo) / (hi - lo)
    else:
        work[:] = 0.0
    return work


def _from_work(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resample of a working-resolution mask to ``shape``."""
    if mask.shape == shape:
        return mask.astype(bool, copy=False)
    pil = Image.fromarray(mask.astype(np.uint8))
    return np.asarray(pil.resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 0


def _px(n_at_256: float, scale: float) -> int:
    """A length given in pixels at 256x256, in working pixels (at least 1)."""
    return max(1, round(n_at_256 * scale))


def _square(side_at_256: int, scale: float) -> np.ndarray:
    side = max(1, round(side_at_256 * scale))
    side += 1 - side % 2  # odd, so the element stays centred
    return np.ones((side, side), dtype=bool)


def _dilate_sq(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a (2r+1)^2 square: a separable uint8 max filter, several times cheaper than
    ``ndi.binary_dilation``, which matters at ~20 ms per film."""
    return ndi.maximum_filter(mask.view(np.uint8), size=2 * r + 1).view(bool)


def _close_sq(mask: np.ndarray, r: int, pad_value: bool = False) -> np.ndarray:
    """Closing by a (2r+1)^2 square; the border is padded with ``pad_value``."""
    padded = np.pad(mask, r, constant_values=pad_value).view(np.uint8)
    size = 2 * r + 1
    return ndi.minimum_filter(ndi.maximum_filter(padded, size=size), size=size)[r:-r, r:-r].view(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background components (4-connected) that do not reach the image edge."""
    labels, n = ndi.label(~mask)
    if n == 0:
        return mask
    edge = np.zeros(n + 1, dtype=bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        edge[side] = True
    edge[0] = True  # label 0 is the mask itself
    return mask | ~edge[labels]


def _prior_map(shape: tuple[int, ...]) -> np.ndarray:
    """exp(-d^2/2), d = elliptical distance to the nearer prior lung ellipse (1 on its rim)."""
    h, w = shape
    yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    dx2 = np.minimum(((xx - 0.30) / 0.14) ** 2, ((xx - 0.70) / 0.14) ** 2)
    return np.exp(-0.5 * (dx2 + ((yy - 0.45) / 0.30) ** 2))


def _clahe(work: np.ndarray) -> np.ndarray:
    return exposure.equalize_adapthist(work, clip_limit=0.01).astype(np.float32, copy=False)


def _component_areas(labels: np.ndarray, n: int) -> np.ndarray:
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    return areas


# ----------------------------------------------------------------------------- "anatpaste"


def _anatpaste(work: np.ndarray, scale: float) -> np.ndarray:
    """The published AnatPaste recipe with its 256x256 constants scaled to the working image."""
    clahe = _clahe(work)
    dark = (clahe <= filters.threshold_otsu(clahe)) & (clahe > 0)  # lungs are the dark class
    se = _square(3, scale)
    mask = ndi.binary_opening(dark, structure=se)  # drops speckle and 1-px bridges
    mask = segmentation.clear_border(mask)  # the air around the body touches the image edge
    mask = ndi.binary_dilation(mask, structure=se)
    labels, n = ndi.label(mask, structure=_SQUARE3)
    areas = _component_areas(labels, n)
    mask = (areas >= 400 * scale**2)[labels] & (labels > 0)  # by label area, not by bounding box
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask, structure=_SQUARE3)
    if n > 2:
        areas = _component_areas(labels, n)
        mask = np.isin(labels, np.argsort(areas)[::-1][:2])
    return mask


# ----------------------------------------------------------------------------- "improved"


def _frame(shape: tuple[int, ...], scale: float, margin: float = 2) -> np.ndarray:
    """A band of ``margin`` px (at 256) along the image edge: what ``clear_border`` tests."""
    m = _px(margin, scale)
    frame = np.zeros(shape, dtype=bool)
    frame[:m, :] = frame[-m:, :] = True
    frame[:, :m] = frame[:, -m:] = True
    return frame


def _outside(work: np.ndarray, scale: float, *, jump: float = 2) -> np.ndarray:
    """Pixels that are certainly not lung: the edge frame plus the air and letterbox padding.

    Air and padding are the near-black regions (``<= AIR_LEVEL``) that reach the frame once
    gaps of up to ``2 * jump`` px are bridged (Montgomery films put a thin bright collimator
    line between the padding and the air), plus any near-black region larger than 1% of the
    image: lungs are never that dark on a min-max scaled film, a pocket of air is.
    """
    h, w = work.shape
    frame = _frame(work.shape, scale)
    black = work <= AIR_LEVEL
    if not black.any():
        return frame
    labels, n = ndi.label(_close_sq(black, _px(jump, scale), pad_value=True))
    air = _component_areas(labels, n) >= 0.01 * h * w
    air[np.unique(labels[frame])] = True
    air[0] = False
    return frame | air[labels]


def _midline(work: np.ndarray, rows: np.ndarray) -> int:
    """Column of the mediastinum/spine: the brightest vertical band in the central 40%."""
    h, w = work.shape
    r0, r1 = (int(rows.min()), int(rows.max()) + 1) if rows.size else (0, h)
    profile = ndi.uniform_filter1d(work[r0:r1].mean(axis=0), size=max(3, w // 20))
    lo, hi = int(0.3 * w), int(0.7 * w)
    return lo + int(np.argmax(profile[lo:hi]))


def _mirror(lung: np.ndarray, mid: int) -> np.ndarray:
    """Reflect a one-side lung mask about column ``mid``."""
    h, w = lung.shape
    ys, xs = np.nonzero(lung)
    xm = 2 * mid - xs
    ok = (xm >= 0) & (xm < w)
    out = np.zeros_like(lung)
    out[ys[ok], xm[ok]] = True
    return out


def _improved(
    work: np.ndarray,
    scale: float,
    *,
    air: bool = True,
    otsu_inside: bool = True,
    radii: tuple[float, ...] = (1, 2, 3, 4, 6),
    low_thresholds: tuple[float, ...] = (0.925, 0.85, 0.775, 0.7),
    prior_select: bool = True,
    merge_r: float = 2,
    grow: float = 4,
    mirror: bool = True,
    balance: float = 0.4,
    hull: bool = False,
    close_r: float = 6,
) -> np.ndarray:
    """Threshold lung segmentation made robust to real films (the default method).

    1. CLAHE (clip 0.01) as published.  ``outside`` = thin frame + air/padding
       (:func:`_outside`).  Otsu threshold ``t0`` over the pixels inside only (letterbox
       padding and outside air would drag it); ``dark`` = CLAHE <= ``t0`` inside.
    2. Seed search per lung side.  A lung is often joined to the outside air through dark
       soft tissue (axilla, shoulders), so ``dark`` is cut progressively: at ``t0`` with a
       square opening of radius 1, 2, 3, 4, 6 px, then at lower thresholds (92.5% ... 70% of
       ``t0``).  At each step, components that reach ``outside`` or are smaller than about 2%
       of the image are rejected; the first step that leaves a candidate on a side gives
       that side's seed: the candidate with the largest prior-weighted area (area weighted
       by :func:`_prior_map`, so the air under an arm or a gastric bubble loses to a lung).
    3. Regrowth.  Ribs cut a lung's dark set into bands, so the seed takes every component
       of ``dark`` closed by a square of radius ``merge_r`` px that it touches, unless that reaches
       ``outside`` (then it leaks through a bridge, and the seed only regrows by its opening
       radius + ``grow`` px inside ``dark``, giving back the edges the opening removed).
    4. Symmetry: a side with no seed, or a lung under ``balance`` (40%) of its twin's area
       (a failed seed, e.g. behind a dense opacity), gets the other lung mirrored about the
       mediastinum (the brightest vertical band of the central 40% of the columns).
    5. Dilation 3x3 (as published), closing with a square of radius ``close_r`` px and hole
       filling: vessels, rib crossings and opacities inside a lung belong to it anatomically.
       Squares (separable max/min filters) rather than disks keep this within the time budget.

    Keyword arguments switch single steps off for the ablation in ``bench/segmentation.py``
    (``hull=True``: per-lung convex hull instead of the closing, a variant that lost).
    """
    h, w = work.shape
    empty = np.zeros((h, w), dtype=bool)
    clahe = _clahe(work)
    if air:
        outside = _outside(work, scale)
        inside = ~outside & (work > AIR_LEVEL) & (clahe > 0)
    else:  # ablation: only the edge frame is outside, as for clear_border
        outside = _frame(work.shape, scale)
        inside = ~outside & (clahe > 0)
    if inside.sum() < MIN_FRACTION * h * w:
        return empty
    t0 = float(filters.threshold_otsu(clahe[inside] if otsu_inside else clahe))
    dark = (clahe <= t0) & inside
    # chessboard distance to outside: the opening of a core pixel at <= r + 1 touches outside
    dist_out = ndi.distance_transform_cdt(~outside, metric="chessboard")
    weight = (_prior_map((h, w)) if prior_select else np.ones((h, w), dtype=np.float32)).ravel()
    xs = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w)).ravel()
    min_area = MIN_FRACTION * h * w
    merged_labels: np.ndarray | None = None
    seeds: list[np.ndarray | None] = [None, None]
    depth, depth_t = np.zeros((h, w), dtype=np.int32), None  # set at the first threshold
    for t, r in [(t0, r) for r in radii] + [(t0 * f, radii[-1]) for f in low_thresholds]:
        if depth_t != t:  # one distance transform per threshold serves every radius
            depth = ndi.distance_transform_cdt((clahe <= t) & inside, metric="chessboard")
            depth_t = t
        rr = r * scale
        core = depth > rr  # erosion by a square of radius rr: its components are the opening's
        labels, n = ndi.label(core, structure=_SQUARE3)
        if n == 0:
            continue
        flat = labels.ravel()
        areas = _component_areas(labels, n).astype(np.float64)
        # a core is its opening shrunk by rr (<= 6 px on a lung ~60 px wide): half the area is ample
        ok = areas >= 0.5 * min_area
        ok[np.unique(labels[core & (dist_out <= rr + 1)])] = False  # its opening reaches outside
        score = np.where(ok, np.bincount(flat, weights=weight, minlength=n + 1), 0.0)
        cx = np.bincount(flat, weights=xs, minlength=n + 1) / np.maximum(areas, 1)
        for s, side in enumerate((ok & (cx < w / 2), ok & (cx >= w / 2))):
            cand = np.flatnonzero(side)
            if seeds[s] is not None or not cand.size:
                continue
            seed = labels == cand[np.argmax(score[cand])]
            if merge_r:
                if merged_labels is None:
                    merged = _close_sq(dark, _px(merge_r, scale)) & inside
                    merged_labels, _ = ndi.label(merged, structure=_SQUARE3)
                ids = np.unique(merged_labels[seed])
                full = np.isin(merged_labels, ids[ids > 0]) | seed
                if dist_out[full].min() > 1:
                    seeds[s] = full
                    continue
            steps = _px(r + grow, scale)
            seeds[s] = ndi.binary_dilation(seed, structure=_SQUARE3, iterations=steps, mask=dark | seed)
        if seeds[0] is not None and seeds[1] is not None:
            break
    if hull:
        seeds = [None if s is None else morphology.convex_hull_image(s) for s in seeds]
    found = [s for s in seeds if s is not None]
    if not found:
        return empty
    if mirror and len(found) == 2 and balance:
        small, big = sorted(found, key=lambda m: int(m.sum()))
        if small.sum() < balance * big.sum():  # a lung far smaller than its twin is a failed seed
            found = [big, small | _mirror(big, _midline(work, np.flatnonzero(big.any(axis=1))))]
    lungs = found[0] | found[1] if len(found) == 2 else found[0]
    if len(found) == 1 and mirror:
        lungs = lungs | _mirror(lungs, _midline(work, np.flatnonzero(lungs.any(axis=1))))
    lungs = _dilate_sq(lungs, _px(1, scale))  # the recipe's 3x3 dilation
    if close_r:
        lungs = _close_sq(lungs, _px(close_r, scale))
    return _fill_holes(lungs)
