"""Synthetic lesions that are *not* the training paste, for a label-free check of a fine-tuned encoder.

Fine-tuning on AnatPaste pastes always gets better at spotting AnatPaste pastes (its synthetic AUC rises)
even when it gets worse at real disease. These families are drawn differently from the training paste —
no copied texture, no sharp blend edge — and mimic the shapes of what chest films show:

- ``opacity``: one smooth bright blob (consolidation, a mass), Gaussian profile, inside one lung;
- ``nodules``: two to five small soft-edged bright discs scattered over the lungs;
- ``haze``: a diffuse brightening of the lower part of one lung (effusion, basal infiltrates).

Each brightens towards white (x + a·(1 − x)·profile) and only inside the lung mask, with every random number
drawn from the caller's generator.
"""

from __future__ import annotations

import torch

FAMILIES = ("opacity", "nodules", "haze")


def _lung_points(lung: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """(B, k, 2) lung pixel coordinates drawn uniformly (image centre for an empty mask)."""
    b, h, w = lung.shape
    weights = lung.reshape(b, -1).float() + 1e-6  # an empty mask draws anywhere (then nothing changes)
    flat = torch.multinomial(weights, k, replacement=True, generator=g)
    return torch.stack([flat // w, flat % w], -1).float()


def _side_mask(lung: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The lung half (left or right of the midline) that holds each batch item's first point."""
    w = lung.shape[-1]
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    left = points[:, 0, 1].view(-1, 1, 1) < w / 2
    return lung & torch.where(left, xs < w / 2, xs >= w / 2)


def lesion_profile(family: str, lung: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A (B, H, W) profile in [0, 1] of one family, zero outside the lung."""
    b, h, w = lung.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    s = float(min(h, w))

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=g)

    if family == "opacity":
        c = _lung_points(lung, 1, g)
        sig = u(0.04, 0.10).view(b, 1, 1) * s
        d2 = (ys - c[:, 0, 0].view(b, 1, 1)) ** 2 + (xs - c[:, 0, 1].view(b, 1, 1)) ** 2
        prof = torch.exp(-0.5 * d2 / sig**2)
    elif family == "nodules":
        k = 5
        c = _lung_points(lung, k, g)
        r = u(0.012, 0.03, k) * s
        keep = torch.arange(k).view(1, k) < torch.randint(2, k + 1, (b, 1), generator=g)
        d = torch.sqrt((ys.unsqueeze(1) - c[..., 0, None, None]) ** 2 + (xs.unsqueeze(1) - c[..., 1, None, None]) ** 2)
        disc = torch.sigmoid((r[..., None, None] - d) / 1.0) * keep[..., None, None]
        prof = disc.amax(1)
    elif family == "haze":
        c = _lung_points(lung, 1, g)
        side = _side_mask(lung, c)
        rows = side.any(-1).float()  # (B, H) rows where this lung is
        top = torch.argmax(rows, 1).float()
        bottom = h - 1 - torch.argmax(rows.flip(1), 1).float()
        level = top + u(0.45, 0.75) * (bottom - top)  # the haze fills the lung below this line
        soft = u(0.03, 0.08).view(b, 1, 1) * s
        prof = torch.sigmoid((ys - level.view(b, 1, 1)) / soft) * side.float()
        return prof
    else:
        raise ValueError(f"unknown lesion family {family!r}; known: {', '.join(FAMILIES)}")
    return prof * lung.float()


def add_lesions(images: torch.Tensor, lung: torch.Tensor, family: str, generator: torch.Generator) -> torch.Tensor:
    """Brighten ``images`` (B, 1, H, W) float [0, 1] with one ``family`` lesion each, inside ``lung``."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey images (B, 1, H, W), got {tuple(images.shape)}")
    m = lung.reshape(images.shape).bool()[:, 0]
    prof = lesion_profile(family, m, generator)
    amp = 0.3 + 0.3 * torch.rand(images.shape[0], generator=generator)
    return images + (1 - images) * (amp.view(-1, 1, 1, 1) * prof.unsqueeze(1))
