"""Unsupervised threshold lung segmentation of frontal chest radiographs.

Two methods share one frame: the input is resampled to a working image whose short side is
``WORK_SIDE`` (256, the resolution the AnatPaste paper's constants refer to), segmented there,
and the mask is resampled back to the input shape with nearest neighbour.  Every structuring
element and area threshold is written "at 256x256" and scaled with the working image, so the
result (and the cost) does not depend on the input size.

* ``"anatpaste"``: the published recipe (Sato et al., AnatPaste), written out explicitly.
* ``"improved"``: the same dark-region idea with a field-of-view mask, an Otsu threshold
  computed inside it, bridge-cutting, anatomical component selection (one lung per side)
  and per-lung hole filling / closing.  See :func:`segment_lungs` for the details.

If a method yields less than ``MIN_FRACTION`` of the image, :func:`prior_lungs` (two ellipses
at typical lung positions) is returned instead, because the paste augmentation needs a
non-empty region.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import exposure, filters, morphology, segmentation

from anatpaste.errors import ImageTooSmallError, UnsupportedImageError

WORK_SIDE = 256  # short side of the working image; the paper's pixel constants are at 256x256
MAX_WORK_LONG = 1024  # caps the working image of extreme aspect ratios (cost stays bounded)
MIN_SIDE = 32
MIN_FRACTION = 0.02  # a lung mask smaller than this share of the image is not trusted
METHODS = ("improved", "anatpaste")
DEFAULT_METHOD = "improved"

_SQUARE3 = np.ones((3, 3), dtype=bool)


def _validate(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise UnsupportedImageError(f"expected a 2-D grey image, got an array of shape {arr.shape}")
    if min(arr.shape) < MIN_SIDE:
        raise ImageTooSmallError(f"image is {arr.shape[0]}x{arr.shape[1]} pixels; need at least {MIN_SIDE} per side")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise UnsupportedImageError("image holds NaN or infinite values")
    return arr


def _work_shape(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    f = min(WORK_SIDE / min(h, w), MAX_WORK_LONG / max(h, w))
    return max(1, round(h * f)), max(1, round(w * f))


def _to_work(image: np.ndarray) -> np.ndarray:
    """Resample to the working shape (antialiased when shrinking) and stretch to [0, 1]."""
    wh, ww = _work_shape(image.shape)
    if (wh, ww) == image.shape:
        work = image.astype(np.float32, copy=True)
    else:
        # reducing_gap: a cheap box pre-reduction first, so a 2k image costs about what a 512 one does
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
        work = np.asarray(pil.resize((ww, wh), Image.BILINEAR, reducing_gap=2.0), dtype=np.float32).copy()
    lo, hi = float(work.min()), float(work.max())
    if hi > lo:
        work = (work - lo) / (hi - lo)
    else:
        work[:] = 0.0
    return work


def _from_work(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of a working-resolution mask to ``shape``."""
    if mask.shape == shape:
        return mask
    rows = (np.arange(shape[0]) * mask.shape[0]) // shape[0]
    cols = (np.arange(shape[1]) * mask.shape[1]) // shape[1]
    return mask[rows[:, None], cols[None, :]]


def _px(n_at_256: float, scale: float) -> int:
    """A length given in pixels at 256x256, in working pixels (at least 1)."""
    return max(1, round(n_at_256 * scale))


def _disk(radius_at_256: float, scale: float) -> np.ndarray:
    return morphology.disk(_px(radius_at_256, scale)).astype(bool)


def _square(side_at_256: int, scale: float) -> np.ndarray:
    side = max(1, round(side_at_256 * scale))
    side += 1 - side % 2  # odd, so the element is centred
    return np.ones((side, side), dtype=bool)


def _remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop connected components (8-connected) with fewer than ``min_area`` pixels."""
    labels, n = ndi.label(mask, structure=_SQUARE3)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    keep = areas >= min_area
    keep[0] = False
    return keep[labels]


def _largest(mask: np.ndarray, k: int) -> np.ndarray:
    labels, n = ndi.label(mask, structure=_SQUARE3)
    if n <= k:
        return mask
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.argsort(areas)[::-1][:k]] = True
    keep[0] = False
    return keep[labels]


def prior_lungs(shape: tuple[int, int]) -> np.ndarray:
    """A fixed anatomical prior: two upright ellipses where lungs sit on a frontal radiograph.

    Used as the fallback when thresholding finds nothing usable.  Each ellipse is centred at
    45% of the height and 30% / 70% of the width, with semi-axes of 30% of the height and 14% of
    the width (roughly the lung fields of an adult PA film), so it scales with any shape.

    Args:
        shape: (H, W) of the mask.

    Returns:
        Boolean (H, W) mask covering about 26% of the image.
    """
    h, w = shape
    yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    mask = np.zeros((h, w), dtype=bool)
    for cx in (0.30, 0.70):
        mask |= ((yy - 0.45) / 0.30) ** 2 + ((xx - cx) / 0.14) ** 2 <= 1.0
    return mask


def _clahe(work: np.ndarray) -> np.ndarray:
    return exposure.equalize_adapthist(work, clip_limit=0.01).astype(np.float32, copy=False)


def _anatpaste(work: np.ndarray, scale: float) -> np.ndarray:
    """The published AnatPaste recipe, constants scaled from 256x256."""
    clahe = _clahe(work)
    dark = (clahe <= filters.threshold_otsu(clahe)) & (clahe > 0)
    se = _square(3, scale)
    mask = ndi.binary_opening(dark, structure=se)
    mask = segmentation.clear_border(mask)
    mask = ndi.binary_dilation(mask, structure=se)
    mask = _remove_small(mask, _px(400, scale * scale))
    mask = ndi.binary_fill_holes(mask)
    return _largest(mask, 2)


def _outside(work: np.ndarray, scale: float, margin_at_256: float) -> np.ndarray:
    """Pixels that are certainly not lung: a frame along the image edge plus black padding."""
    m = _px(margin_at_256, scale)
    frame = np.zeros(work.shape, dtype=bool)
    frame[:m, :] = frame[-m:, :] = True
    frame[:, :m] = frame[:, -m:] = True
    low = work <= 0.02
    lab, n = ndi.label(low)
    if n:
        touching = np.unique(lab[frame & low])
        frame |= np.isin(lab, touching[touching > 0])
    return frame


def _prior_weight(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    d2 = np.minimum(((xx - 0.30) / 0.14) ** 2, ((xx - 0.70) / 0.14) ** 2) + ((yy - 0.45) / 0.30) ** 2
    return np.exp(-0.5 * d2)


def _improved(
    work: np.ndarray,
    scale: float,
    *,
    margin: float = 3,
    sigma: float = 0,
    open_r: float = 0,
    dilate: int = 3,
    otsu_fov: bool = True,
    select: str = "prior",
    finish: str = "fill",
    close_r: float = 6,
    recon: bool = True,
) -> np.ndarray:
    clahe = _clahe(work)
    if sigma:
        clahe = ndi.gaussian_filter(clahe, sigma * scale)
    outside = _outside(work, scale, margin)
    fov = ~outside
    t = filters.threshold_otsu(clahe[fov]) if otsu_fov else filters.threshold_otsu(clahe)
    dark = (clahe <= t) & (work > 0.0) & fov
    dark0 = dark
    if open_r:
        dark = ndi.binary_opening(dark, structure=_disk(open_r, scale))
    else:
        dark = ndi.binary_opening(dark, structure=_SQUARE3)
    lab, n = ndi.label(dark, structure=_SQUARE3)
    if n == 0:
        return dark
    idx = np.arange(n + 1)
    touching = np.unique(lab[ndi.binary_dilation(outside, structure=_SQUARE3) & dark])
    areas = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    areas[0] = 0
    areas[touching] = 0
    areas[areas < _px(400, scale * scale)] = 0
    h, w = work.shape
    if select == "prior":
        score = ndi.sum_labels(_prior_weight((h, w)), lab, index=idx) * (areas > 0)
    else:
        score = areas
    keep = []
    if select in ("prior", "side"):
        xs = ndi.sum_labels(np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w)), lab, index=idx)
        cx = xs / np.maximum(areas, 1)
        for side in ((areas > 0) & (cx < w / 2), (areas > 0) & (cx >= w / 2)):
            cand = np.where(side)[0]
            if cand.size:
                keep.append(cand[np.argmax(score[cand])])
    else:
        keep = [i for i in np.argsort(score)[::-1][:2] if score[i] > 0]
    lungs = np.isin(lab, keep)
    if open_r and recon:
        lungs = ndi.binary_dilation(lungs, structure=_disk(open_r, scale)) & dark0
    if dilate:
        lungs = ndi.binary_dilation(lungs, structure=_square(dilate, scale))
    if finish == "hull":
        out = np.zeros_like(lungs)
        sub, k = ndi.label(lungs, structure=_SQUARE3)
        for i in range(1, k + 1):
            out |= morphology.convex_hull_image(sub == i)
        lungs = out
    elif finish == "close":
        r = _px(close_r, scale)
        lungs = ndi.binary_closing(np.pad(lungs, r), structure=morphology.disk(r).astype(bool))[r:-r, r:-r]
    return ndi.binary_fill_holes(lungs)


def _select(cand: np.ndarray, forbidden: np.ndarray, scale: float, prior: bool = True, drop_touch: bool = True) -> np.ndarray:
    lab, n = ndi.label(cand, structure=_SQUARE3)
    if n == 0:
        return cand
    h, w = cand.shape
    idx = np.arange(n + 1)
    areas = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    areas[0] = 0
    if drop_touch:
        touching = np.unique(lab[ndi.binary_dilation(forbidden, structure=_SQUARE3) & cand])
        areas[touching] = 0
    areas[areas < _px(400, scale * scale)] = 0
    score = ndi.sum_labels(_prior_weight((h, w)), lab, index=idx) if prior else areas.copy()
    score[areas == 0] = 0
    xs = ndi.sum_labels(np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w)), lab, index=idx)
    cx = xs / np.maximum(areas, 1)
    keep = []
    for side in ((areas > 0) & (cx < w / 2), (areas > 0) & (cx >= w / 2)):
        c = np.where(side)[0]
        if c.size:
            keep.append(c[np.argmax(score[c])])
    return np.isin(lab, keep)


def _body_variant(
    work: np.ndarray,
    scale: float,
    *,
    sigma: float = 2,
    margin: float = 3,
    src: str = "smooth",
    body_erode: float = 2,
    open_r: float = 1,
    drop_touch: bool = True,
    finish: str = "close",
    close_r: float = 6,
    dilate: int = 0,
) -> np.ndarray:
    outside = _outside(work, scale, margin)
    fov = ~outside
    ws = ndi.gaussian_filter(work, sigma * scale) if sigma else work
    t1 = filters.threshold_otsu(ws[fov])
    t_air = filters.threshold_otsu(ws[fov & (ws <= t1)])
    body = _largest(ndi.binary_fill_holes((ws > t_air) & fov), 1)
    if body_erode:
        body = ndi.binary_erosion(body, structure=_disk(body_erode, scale))
    img = _clahe(work) if src == "clahe" else ws
    t2 = filters.threshold_otsu(img[body])
    dark = (img <= t2) & body
    if open_r:
        dark = ndi.binary_opening(dark, structure=_disk(open_r, scale))
    lungs = _select(dark, ~body, scale, drop_touch=drop_touch)
    if dilate:
        lungs = ndi.binary_dilation(lungs, structure=_square(dilate, scale))
    if finish == "hull":
        out = np.zeros_like(lungs)
        sub, k = ndi.label(lungs, structure=_SQUARE3)
        for i in range(1, k + 1):
            out |= morphology.convex_hull_image(sub == i)
        lungs = out
    elif finish == "close":
        r = _px(close_r, scale)
        lungs = ndi.binary_closing(np.pad(lungs, r), structure=morphology.disk(r).astype(bool))[r:-r, r:-r]
    return ndi.binary_fill_holes(lungs)


def _outside2(work: np.ndarray, scale: float, margin_at_256: float, low: float = 0.05, jump: float = 2) -> np.ndarray:
    m = _px(margin_at_256, scale)
    frame = np.zeros(work.shape, dtype=bool)
    frame[:m, :] = frame[-m:, :] = True
    frame[:, :m] = frame[:, -m:] = True
    dark = work <= low
    if jump:
        r = _px(jump, scale)
        dark = ndi.binary_closing(np.pad(dark, r, constant_values=True), structure=morphology.disk(r).astype(bool))[r:-r, r:-r]
    lab, n = ndi.label(dark)
    if n:
        touching = np.unique(lab[frame & dark])
        frame |= np.isin(lab, touching[touching > 0])
    return frame


def _sweep(
    work: np.ndarray,
    scale: float,
    *,
    margin: float = 2,
    low: float = 0.05,
    jump: float = 2,
    steps: int = 6,
    low_frac: float = 0.6,
    open_r: float = 1,
    min_lung: float = 0.02,
    prior: bool = True,
    finish: str = "close",
    close_r: float = 6,
    dilate: int = 3,
    no_air: bool = True,
    grow: float = 0,
) -> np.ndarray:
    h, w = work.shape
    c = _clahe(work)
    valid = (c > 0) & (work > low) if no_air else (c > 0)
    outside = _outside2(work, scale, margin, low, jump)
    near_out = ndi.binary_dilation(outside, structure=_SQUARE3)
    t0 = filters.threshold_otsu(c)
    weight = _prior_weight((h, w)) if prior else np.ones((h, w))
    xgrid = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w))
    min_area = min_lung * h * w
    found: list[np.ndarray | None] = [None, None]
    se = _disk(open_r, scale) if open_r else None
    for t in np.linspace(t0, t0 * low_frac, steps):
        dark = (c <= t) & ~outside & valid
        if se is not None:
            dark = ndi.binary_opening(dark, structure=se)
        lab, n = ndi.label(dark, structure=_SQUARE3)
        if n == 0:
            continue
        idx = np.arange(n + 1)
        areas = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        areas[0] = 0
        areas[np.unique(lab[near_out & dark])] = 0
        areas[areas < min_area] = 0
        score = ndi.sum_labels(weight, lab, index=idx)
        score[areas == 0] = 0
        cx = ndi.sum_labels(xgrid, lab, index=idx) / np.maximum(areas, 1)
        for s, side in enumerate(((areas > 0) & (cx < w / 2), (areas > 0) & (cx >= w / 2))):
            cand = np.where(side)[0]
            if found[s] is None and cand.size:
                found[s] = lab == cand[np.argmax(score[cand])]
        if found[0] is not None and found[1] is not None:
            break
    lungs = np.zeros((h, w), dtype=bool)
    for f in found:
        if f is not None:
            lungs |= f
    if grow:
        lungs = ndi.binary_dilation(lungs, structure=_SQUARE3, iterations=_px(grow, scale), mask=(c <= t0) & ~outside & valid)
    if dilate:
        lungs = ndi.binary_dilation(lungs, structure=_square(dilate, scale))
    if finish == "hull":
        out = np.zeros_like(lungs)
        sub, k = ndi.label(lungs, structure=_SQUARE3)
        for i in range(1, k + 1):
            out |= morphology.convex_hull_image(sub == i)
        lungs = out
    elif finish == "close":
        r = _px(close_r, scale)
        lungs = ndi.binary_closing(np.pad(lungs, r), structure=morphology.disk(r).astype(bool))[r:-r, r:-r]
    return ndi.binary_fill_holes(lungs)


def _open_edt(mask: np.ndarray, r: float) -> np.ndarray:
    core = ndi.distance_transform_edt(mask) > r
    return ndi.distance_transform_edt(~core) <= r


def _sweep2(
    work: np.ndarray,
    scale: float,
    *,
    margin: float = 2,
    low: float = 0.05,
    jump: float = 2,
    radii: tuple = (1, 2, 3, 4, 6),
    steps: int = 4,
    low_frac: float = 0.7,
    min_lung: float = 0.02,
    otsu: str = "global",
    finish: str = "close",
    close_r: float = 6,
    grow: float = 4,
    dilate: int = 0,
) -> np.ndarray:
    h, w = work.shape
    c = _clahe(work)
    outside = _outside2(work, scale, margin, low, jump)
    valid = (c > 0) & (work > low) & ~outside
    near_out = ndi.binary_dilation(outside, structure=_SQUARE3)
    if otsu == "global":
        t0 = filters.threshold_otsu(c)
    else:
        t0 = filters.threshold_otsu(c[valid])
    weight = _prior_weight((h, w))
    xgrid = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w))
    min_area = min_lung * h * w
    found: list = [None, None]
    sched = [(t0, r) for r in radii] + [(t, radii[-1]) for t in np.linspace(t0, t0 * low_frac, steps + 1)[1:]]
    d0 = (c <= t0) & valid
    for t, r in sched:
        dark = (c <= t) & valid
        dark = _open_edt(dark, r * scale) if r else dark
        lab, n = ndi.label(dark, structure=_SQUARE3)
        if n == 0:
            continue
        idx = np.arange(n + 1)
        areas = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        areas[0] = 0
        areas[np.unique(lab[near_out & dark])] = 0
        areas[areas < min_area] = 0
        score = ndi.sum_labels(weight, lab, index=idx)
        score[areas == 0] = 0
        cx = ndi.sum_labels(xgrid, lab, index=idx) / np.maximum(areas, 1)
        for s, side in enumerate(((areas > 0) & (cx < w / 2), (areas > 0) & (cx >= w / 2))):
            cand = np.where(side)[0]
            if found[s] is None and cand.size:
                seed = lab == cand[np.argmax(score[cand])]
                steps_g = _px(r + grow, scale) if (r + grow) else 0
                if steps_g:
                    seed = ndi.binary_dilation(seed, structure=_SQUARE3, iterations=steps_g, mask=d0 | seed)
                found[s] = seed
        if found[0] is not None and found[1] is not None:
            break
    lungs = np.zeros((h, w), dtype=bool)
    for f in found:
        if f is not None:
            lungs |= f
    if dilate:
        lungs = ndi.binary_dilation(lungs, structure=_square(dilate, scale))
    if finish == "hull":
        out = np.zeros_like(lungs)
        sub, k = ndi.label(lungs, structure=_SQUARE3)
        for i in range(1, k + 1):
            out |= morphology.convex_hull_image(sub == i)
        lungs = out
    elif finish == "close":
        r = _px(close_r, scale)
        lungs = ndi.binary_closing(np.pad(lungs, r), structure=morphology.disk(r).astype(bool))[r:-r, r:-r]
    return ndi.binary_fill_holes(lungs)
