"""The picture's own statistics, fitted on a model's training normals and stored in its model file.

The anomaly score alone does not tell a chest film from a photograph: its embedding was trained to tell a
film from the same film with a pasted lesion, and a grey photograph can score like a sick film. Two
statistics of the *picture* do better, each a Gaussian fitted on the model's training normals
(:func:`fit_input_statistics`) and measured in units of those normals' own cross-fitted distances (so
the limits in :mod:`anatpaste.gate.familiarity` hold for any model file):

* **layout** — a 12x12 thumbnail of the film area (the model's input grid without its letterbox padding,
  each thumbnail scaled to mean 0 and standard deviation 1): where the bright and the dark parts of the
  picture lie. A frontal chest film has two dark fields beside a bright middle, shoulders above and a
  brighter abdomen below; the same film upside down or turned by 90 degrees does not, and is compared
  with its turned-back copies (:func:`layout_distances`).
* **texture** — the mean and spread over the film area, and over the lung fields found, of every channel
  of the encoder's first two stages (``layer1``, ``layer2``): what the picture is made of at the scale of
  ribs, vessels and film grain. A photograph, a CT slice or a drawing is made of something else, even
  where it has dark regions that pass for lung fields.

Both are computed on the film area because real films differ most in how much black padding or direct
exposure surrounds them (Montgomery's films are padded on three sides): without the padding, the films
of a site the model never saw lie among the training normals.

The texture needs the model's encoder, so whatever writes a model file with a new encoder refits them: call
:func:`with_input_statistics` on the new payload with the normals it was fitted on (the training export does,
on the run's normals; ``calibrate`` keeps its parent's, and fits them on the site's normals where the payload
holds none usable, such as ``adapt``'s fine-tuned candidates). They record the fingerprint of the encoder they
were fitted with, so a payload whose encoder was replaced without refitting does not use them. A
model file without usable statistics still loads and scores; the gate then runs its older rules and says why
(:func:`anatpaste.gate.familiarity.input_statistics`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.covariance import ledoit_wolf

from anatpaste.gate.content import TURN_BACK
from anatpaste.score.features import normalise_input

if TYPE_CHECKING:
    from anatpaste.data import ImageSet
    from anatpaste.model.resnet import ResNet18Encoder

logger = logging.getLogger(__name__)

KEY = "input_statistics"  # where a model payload holds them
VERSION = 2  # 2: with the fingerprint of the encoder they were fitted with
THUMB_SIDE = 12  # the layout thumbnail: coarse enough to be the layout, not the detail
PADDING_LEVEL = 0.05  # a border row / column darker on average than this (of the grid's range) is padding
MIN_AREA_SIDE = 16  # a film area narrower than this (of the input grid) is no trim: the grid is used whole
FOLDS = 5  # cross-fitting of the normals' own distances
MIN_NORMALS = 2 * FOLDS * 4  # fewer normals than this cannot give a covariance and quartiles worth storing
TEXTURE_STAGES = ("layer1", "layer2")


# ----------------------------------------------------------------------------- the picture's film area


def film_area(grid: np.ndarray) -> tuple[int, int, int, int]:
    """Rows ``r0:r1`` and columns ``c0:c1`` of ``grid`` without its padding.

    Padding is a run of border rows (columns) whose mean grey lies in the darkest ``PADDING_LEVEL`` of the
    grid's range: letterbox bars, direct exposure beside the patient. The whole grid if nothing is left.
    """
    g = np.asarray(grid, dtype=np.float32)
    lo, hi = float(g.min()), float(g.max())
    level = lo + PADDING_LEVEL * (hi - lo)
    rows = np.flatnonzero(g.mean(axis=1) > level)
    cols = np.flatnonzero(g.mean(axis=0) > level)
    if len(rows) < MIN_AREA_SIDE or len(cols) < MIN_AREA_SIDE:
        return 0, g.shape[0], 0, g.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _resized(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape == shape:
        return np.asarray(a, dtype=np.float32)
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _crop_like(mask: np.ndarray, area: tuple[int, int, int, int], side: int) -> np.ndarray:
    """The part of ``mask`` (any resolution, same picture) that ``area`` (on a ``side``-px grid) covers."""
    h, w = mask.shape
    r0, r1, c0, c1 = area
    return mask[
        r0 * h // side : max(r0 * h // side + 1, r1 * h // side),
        c0 * w // side : max(c0 * w // side + 1, c1 * w // side),
    ]


def layout_vector(grid: np.ndarray) -> np.ndarray:
    """The layout thumbnail (``THUMB_SIDE``², float64) of a model input grid (uint8 or float (S, S))."""
    r0, r1, c0, c1 = film_area(grid)
    t = _resized(np.asarray(grid, dtype=np.float32)[r0:r1, c0:c1], (THUMB_SIDE, THUMB_SIDE)).astype(np.float64)
    return ((t - t.mean()) / (t.std() + 1e-6)).ravel()


@torch.no_grad()
def texture_vectors(
    encoder: ResNet18Encoder, grids: list[np.ndarray], lungs: list[np.ndarray | None], mean: float, std: float
) -> np.ndarray:
    """Texture vectors (N, 768) of model input grids (uint8 (S, S)) and their lung masks (any resolution).

    Per channel of ``layer1`` and ``layer2``: mean and standard deviation over the film area, then over the
    lung fields inside it (the film area's again where a mask is None or empty).
    """
    side = grids[0].shape[0]
    crops, weights = [], []
    for grid, lung in zip(grids, lungs, strict=True):
        area = film_area(grid)
        r0, r1, c0, c1 = area
        crops.append(np.round(_resized(np.asarray(grid, dtype=np.float32)[r0:r1, c0:c1], (side, side))))
        m = None if lung is None else _crop_like(np.asarray(lung, dtype=np.float32), area, side)
        weights.append(m if m is not None and m.size and m.max() > 0 else None)
    x = normalise_input(torch.from_numpy(np.stack(crops).astype(np.uint8)).unsqueeze(1), mean, std)
    was_training = encoder.training
    encoder.eval()
    try:
        x = x.to(next(encoder.parameters()).device)
        stem = encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(x))))
        l1 = encoder.layer1(stem)
        l2 = encoder.layer2(l1)
    finally:
        encoder.train(was_training)
    out = []
    for maps in (l1.float().cpu(), l2.float().cpu()):
        h, w = maps.shape[-2:]
        whole = torch.full((len(grids), 1, h, w), 1.0 / (h * w))
        in_lungs = torch.stack([whole[0] if m is None else _weights(m, (h, w)) for m in weights])
        for wts in (whole, in_lungs):
            mu = (maps * wts).sum((2, 3))
            sd = (((maps - mu[..., None, None]) ** 2) * wts).sum((2, 3)).clamp_min(0).sqrt()
            out += [mu, sd]
    return torch.cat(out, 1).double().numpy()


def _weights(mask: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """A mask as pooling weights (1, h, w) summing to 1 on a feature map's grid (area-averaged)."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    m = (
        F.adaptive_avg_pool2d(m, hw)[0]
        if m.shape[-2] >= hw[0] and m.shape[-1] >= hw[1]
        else F.interpolate(m, size=hw, mode="bilinear", align_corners=False)[0]
    )
    total = float(m.sum())
    return m / total if total > 0 else torch.full_like(m, 1.0 / (hw[0] * hw[1]))


# ----------------------------------------------------------------------------- the Gaussians


@dataclass(frozen=True)
class Familiarity:
    """A Gaussian of the normals' vectors and the normals' own cross-fitted distances to it.

    ``units(d)`` is a distance as "spreads beyond the normals' median": (d − median) / IQR of the
    cross-fitted distances, the same units as the anomaly score's rule in :mod:`anatpaste.gate.familiarity`.
    """

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)
    crossfit: np.ndarray  # sorted distances of each normal to a Gaussian fitted without it

    @staticmethod
    def _fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = x.mean(axis=0)
        cov, _ = ledoit_wolf(x - mu, assume_centered=True)
        return mu, np.linalg.pinv(cov, hermitian=True)

    @classmethod
    def fit(cls, x: np.ndarray, seed: int = 0) -> Familiarity:
        """Fit on (N, D) vectors of normals (N ≥ ``MIN_NORMALS``); cross-fitted in ``FOLDS`` folds."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < MIN_NORMALS:
            raise ValueError(f"need (N >= {MIN_NORMALS}, D) vectors of normals, got {x.shape}")
        folds = np.random.default_rng(seed).permutation(len(x)) % FOLDS
        crossfit = np.zeros(len(x))
        for k in range(FOLDS):
            mu, prec = cls._fit(x[folds != k])
            crossfit[folds == k] = _mahalanobis(x[folds == k], mu, prec)
        mu, prec = cls._fit(x)
        return cls(mu, prec, np.sort(crossfit))

    def distance(self, x: np.ndarray) -> np.ndarray:
        return _mahalanobis(np.atleast_2d(np.asarray(x, dtype=np.float64)), self.mean, self.precision)

    @cached_property
    def median(self) -> float:
        return float(np.median(self.crossfit))

    @cached_property
    def spread(self) -> float:
        q25, q75 = np.percentile(self.crossfit, [25, 75])
        return float(q75 - q25)

    def units(self, distance: np.ndarray | float) -> np.ndarray:
        return (np.asarray(distance, dtype=np.float64) - self.median) / self.spread

    def state_dict(self) -> dict[str, Any]:
        return {
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "precision": torch.from_numpy(self.precision.astype(np.float32)),
            "crossfit_distances": [float(d) for d in self.crossfit],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Familiarity:
        return cls(
            np.asarray(state["mean"], dtype=np.float64),
            np.asarray(state["precision"], dtype=np.float64),
            np.sort(np.asarray(state["crossfit_distances"], dtype=np.float64)),
        )


def _mahalanobis(x: np.ndarray, mu: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = x - mu
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, precision, d), 0.0))


def encoder_fingerprint(encoder_state: dict[str, Any]) -> str:
    """SHA-256 of a model file's stored encoder (``payload["encoder"]``: int8 or fp32 tensors), key by key."""
    h = hashlib.sha256()
    for key in sorted(encoder_state):
        value = encoder_state[key]
        h.update(key.encode())
        for t in (value["q"], value["scale"]) if isinstance(value, dict) else (value,):
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def statistics_problem(payload: dict[str, Any]) -> str | None:
    """Why ``payload``'s statistics cannot be used (None: they can)."""
    state = payload.get(KEY)
    if not isinstance(state, dict):
        return "holds no input statistics"
    if int(state.get("version", 0)) != VERSION:
        return f"holds input statistics of format {state.get('version')} (this anatpaste reads {VERSION})"
    if state.get("encoder_sha256") != encoder_fingerprint(payload["encoder"]):
        return "holds input statistics fitted with another encoder (a fine-tune that did not refit them)"
    return None


@dataclass(frozen=True)
class InputStatistics:
    """The layout and texture Gaussians of a model file (``payload[KEY]``)."""

    layout: Familiarity
    texture: Familiarity

    @classmethod
    def of(cls, payload: dict[str, Any]) -> InputStatistics | None:
        """The model file's statistics; None where :func:`statistics_problem` finds one (none, another format,
        or fitted with another encoder than the file's)."""
        if statistics_problem(payload) is not None:
            return None
        state = payload[KEY]
        return cls(Familiarity.from_state_dict(state["layout"]), Familiarity.from_state_dict(state["texture"]))

    def layout_units(self, grid: np.ndarray) -> dict[str, float]:
        """Layout distance, in spreads, of ``grid`` as it is (``"as is"``) and turned back each way."""
        t = layout_vector(grid).reshape(THUMB_SIDE, THUMB_SIDE)
        ways = {"as is": t, **{f"{k}:{i}": f(t) for k, fs in TURN_BACK.items() for i, f in enumerate(fs)}}
        d = self.layout.units(self.layout.distance(np.stack([np.ascontiguousarray(v).ravel() for v in ways.values()])))
        return dict(zip(ways, (float(v) for v in d), strict=True))


# ----------------------------------------------------------------------------- fitting


def fit_input_statistics(
    payload: dict[str, Any], normals: ImageSet, *, encoder: ResNet18Encoder | None = None, seed: int = 0
) -> dict[str, Any]:
    """The ``payload[KEY]`` entry for a model payload and the normals its Gaussians were fitted on.

    Args:
        payload: a model payload (loaded or about to be saved): its encoder and preprocessing are used.
        normals: the model's training normals at its input size, with their lung masks (an ``ImageSet``:
            for a shipped file, the folders in ``payload["training"]["data"]``; after ``calibrate`` or
            ``adapt``, the site's normals the new statistics were fitted on).
        encoder: ``payload["encoder"]`` loaded, if the caller has it already (it is not changed). The
            statistics record the fingerprint of ``payload["encoder"]``: a file whose encoder is replaced later
            (a fine-tune) no longer uses them.
        seed: the cross-fitting folds.

    Raises:
        ValueError: fewer than ``MIN_NORMALS`` normals, or images not at the model's input size.
    """
    from anatpaste.model.file import encoder_of

    size = int(payload["preprocessing"]["image_size"])
    if normals.images.shape[-1] != size or normals.images.shape[-2] != size:
        raise ValueError(f"normals are {tuple(normals.images.shape[-2:])} px but the model takes {size} px")
    enc = encoder if encoder is not None else encoder_of(payload)
    pre = payload["preprocessing"]
    grids = [g[0].numpy() for g in normals.images]
    lungs = [m[0].numpy() for m in normals.lungs]
    texture = np.concatenate(
        [
            texture_vectors(enc, grids[i : i + 64], lungs[i : i + 64], float(pre["norm_mean"]), float(pre["norm_std"]))
            for i in range(0, len(grids), 64)
        ]
    )
    layout = np.stack([layout_vector(g) for g in grids])
    return {
        "version": VERSION,
        "layout": Familiarity.fit(layout, seed).state_dict(),
        "texture": Familiarity.fit(texture, seed).state_dict(),
        "encoder_sha256": encoder_fingerprint(payload["encoder"]),
        "n_normals": len(normals),
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "how": (
            f"Ledoit-Wolf Gaussians of the normals' layout ({THUMB_SIDE}x{THUMB_SIDE} thumbnail of the film "
            f"area) and texture ({'+'.join(TEXTURE_STAGES)} channel mean and spread, film area and lung "
            f"fields); crossfit_distances: each normal's distance to a Gaussian fitted without it "
            f"({FOLDS} folds)"
        ),
    }


def with_input_statistics(
    payload: dict[str, Any], normals: ImageSet, *, encoder_changed: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """A copy of ``payload`` holding :func:`fit_input_statistics` of ``normals`` (the input is not changed).

    With fewer than ``MIN_NORMALS`` normals nothing is fitted (a warning says so): the copy keeps ``payload``'s
    statistics if they still describe its encoder (``encoder_changed=False``: ``calibrate``, which keeps the
    encoder), and holds none otherwise (a fine-tune, a new training), so the gate says its rules do not run.

    Args:
        payload: see :func:`fit_input_statistics`.
        normals: see :func:`fit_input_statistics`.
        encoder_changed: whether ``payload``'s encoder differs from the one its present statistics were fitted
            with; only used when there are too few normals.
        **kwargs: ``encoder``, ``seed`` of :func:`fit_input_statistics`.
    """
    if len(normals) < MIN_NORMALS:
        kept = not encoder_changed and KEY in payload
        logger.warning(
            f"{len(normals)} normals are too few for the input statistics (need {MIN_NORMALS}): "
            + (
                "the model file keeps its earlier ones"
                if kept
                else "the model file holds none, and the gate's layout and texture checks will not run"
            )
        )
        return dict(payload) if kept else {k: v for k, v in payload.items() if k != KEY}
    return {**payload, KEY: fit_input_statistics(payload, normals, **kwargs)}
