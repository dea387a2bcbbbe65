"""AnatPaste augmentation, batched in torch so it runs on the training device (GPU or CPU).

The original code cut, jittered, drew and blurred one PIL image at a time on CPU workers; here every
step is a tensor operation over the whole batch. All random numbers are drawn once, up front, from one
``torch.Generator`` (:meth:`AnatPaste.draw`), then applied (:meth:`AnatPaste.apply`), so the same draw can
be replayed and inspected in tests.

Geometry (per sample, sizes relative to the image, so any input size works):
- patch area ~ U(0.02, 0.15)·H·W, aspect ratio ~ exp(U(ln 0.3, ln 1/0.3)), source taken anywhere in the image;
- brightness and contrast jitter of ±10 %;
- pasted centred on a uniformly drawn pixel of the lung mask;
- blend mask: ellipse or rectangle (p = 0.5) inset by a margin, opacity U(150, 255)/255, Gaussian blur of
  radius U(0, 14) at 256 px, then multiplied by the lung mask (the anomaly lives only inside the lung);
- out = patch·α + image·(1 − α).
Unlike the original (which blurred the mask against a black canvas and so darkened a halo around the
patch) α is also multiplied by where the shifted source has content, so nothing black is ever blended in.

``halo=True`` reproduces the original's blend instead: the jittered patch sits on a black canvas (zero outside
the patch), and the blend shape is inset by the original's fixed margin (10 px at 256) whatever the blur, so a
blur wider than the margin spreads α beyond the patch, where the canvas blends black into the lung: a dark halo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ORIGINAL_MARGIN_AT_256 = 10.0  # the original code's inset of the blend shape, in px at 256, fixed (halo=True)


@dataclass
class PasteParams:
    """One batch's random draw; every tensor has the batch size as first dimension."""

    patch_hw: torch.Tensor  # (B, 2) patch height, width in pixels (float)
    source_yx: torch.Tensor  # (B, 2) top-left of the cut patch
    target_yx: torch.Tensor  # (B, 2) centre of the paste, a lung pixel
    brightness: torch.Tensor  # (B,)
    contrast: torch.Tensor  # (B,)
    ellipse: torch.Tensor  # (B,) bool
    opacity: torch.Tensor  # (B,)
    blur_sigma: torch.Tensor  # (B,) pixels at the batch's resolution


class AnatPaste:
    """Paste a jittered patch of each image into its own lung.

    Args:
        area: range of the patch area as a fraction of the image area.
        aspect: range of the patch aspect ratio (height / width), sampled log-uniformly.
        jitter: brightness and contrast jitter amplitude.
        opacity: range of the blend opacity (fraction of 1).
        max_blur_at_256: largest blur radius (Gaussian sigma) at 256 px; scales with the image size.
        ellipse_prob: probability of an elliptic (else rectangular) blend mask.
        halo: blend as the original code did (black canvas outside the patch, fixed inset), which darkens a halo
            around the patch; the default never blends black in. Same draws either way.

    Example:
        >>> import torch
        >>> img = torch.rand(2, 1, 64, 64); lung = torch.zeros(2, 1, 64, 64, dtype=torch.bool)
        >>> lung[..., 16:48, 8:56] = True
        >>> out = AnatPaste()(img, lung, generator=torch.Generator().manual_seed(0))
        >>> bool(((out != img) & ~lung).any())
        False
    """

    def __init__(
        self,
        area: tuple[float, float] = (0.02, 0.15),
        aspect: tuple[float, float] = (0.3, 1 / 0.3),
        jitter: float = 0.1,
        opacity: tuple[float, float] = (150 / 255, 1.0),
        max_blur_at_256: float = 14.0,
        ellipse_prob: float = 0.5,
        halo: bool = False,
    ) -> None:
        if not 0 < area[0] <= area[1] < 1:
            raise ValueError(f"area must satisfy 0 < low <= high < 1, got {area}")
        if not 0 < aspect[0] <= aspect[1]:
            raise ValueError(f"aspect must satisfy 0 < low <= high, got {aspect}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        if not 0 < opacity[0] <= opacity[1] <= 1:
            raise ValueError(f"opacity must satisfy 0 < low <= high <= 1, got {opacity}")
        if max_blur_at_256 < 0:
            raise ValueError(f"max_blur_at_256 must be >= 0, got {max_blur_at_256}")
        if not 0 <= ellipse_prob <= 1:
            raise ValueError(f"ellipse_prob must be in [0, 1], got {ellipse_prob}")
        self.area = area
        self.log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
        self.jitter = jitter
        self.opacity = opacity
        self.max_blur_at_256 = max_blur_at_256
        self.ellipse_prob = ellipse_prob
        self.halo = halo

    def draw(self, lung: torch.Tensor, generator: torch.Generator | None = None) -> PasteParams:
        """Draw every random quantity for a batch of lung masks (B, 1, H, W) or (B, H, W)."""
        lung = lung.reshape(lung.shape[0], -1, lung.shape[-2], lung.shape[-1])[:, 0]
        b, h, w = lung.shape
        dev = lung.device

        def u(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(b, device=dev, generator=generator)

        area = u(*self.area) * h * w
        ratio = torch.exp(u(*self.log_aspect))
        ph = torch.sqrt(area * ratio).clamp(2, h - 1)
        pw = torch.sqrt(area / ratio).clamp(2, w - 1)
        sy = torch.floor(torch.rand(b, device=dev, generator=generator) * (h - ph + 1))
        sx = torch.floor(torch.rand(b, device=dev, generator=generator) * (w - pw + 1))
        # A uniformly drawn lung pixel; an empty mask falls back to the image centre (nothing is pasted
        # there anyway, since alpha is multiplied by the mask).
        weights = lung.reshape(b, -1).float()
        centre = (h // 2) * w + w // 2
        weights[:, centre] += (weights.sum(1) == 0).float()  # no boolean indexing: it would sync the GPU
        # Inverse-CDF draw instead of torch.multinomial, whose CUDA path checks its input with .item() and
        # so stalls the GPU queue every step. Counts stay exact in float32 up to 2**24 pixels.
        cdf = weights.cumsum(1)
        pick = torch.rand(b, 1, device=dev, generator=generator) * cdf[:, -1:]
        flat = torch.searchsorted(cdf, pick, right=True).squeeze(1).clamp_max(h * w - 1)
        target = torch.stack([flat // w, flat % w], 1).float()
        return PasteParams(
            patch_hw=torch.stack([ph, pw], 1),
            source_yx=torch.stack([sy, sx], 1),
            target_yx=target,
            brightness=u(1 - self.jitter, 1 + self.jitter),
            contrast=u(1 - self.jitter, 1 + self.jitter),
            ellipse=torch.rand(b, device=dev, generator=generator) < self.ellipse_prob,
            opacity=u(*self.opacity),
            blur_sigma=u(0.0, self.max_blur_at_256) * (min(h, w) / 256.0),
        )

    def apply(self, images: torch.Tensor, lung: torch.Tensor, p: PasteParams) -> torch.Tensor:
        """Paste with a given draw. ``images`` (B, 1, H, W) float in [0, 1]; ``lung`` (B, 1, H, W) bool."""
        b, c, h, w = images.shape
        if c != 1:
            raise ValueError(f"expected grey images (B, 1, H, W), got {tuple(images.shape)}")
        dev, dt = images.device, images.dtype
        ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
        xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
        ph, pw = p.patch_hw[:, 0].view(b, 1, 1), p.patch_hw[:, 1].view(b, 1, 1)
        ty, tx = p.target_yx[:, 0].view(b, 1, 1), p.target_yx[:, 1].view(b, 1, 1)
        # Top-left of the paste window; the source pixel for target (y, x) is (y + dy, x + dx).
        dy = p.source_yx[:, 0].view(b, 1, 1) - (ty - torch.floor(ph / 2))
        dx = p.source_yx[:, 1].view(b, 1, 1) - (tx - torch.floor(pw / 2))
        src_y, src_x = ys + dy, xs + dx
        has_content = (src_y >= 0) & (src_y <= h - 1) & (src_x >= 0) & (src_x <= w - 1)
        idx = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).long().view(b, -1)
        shifted = torch.gather(images.view(b, -1), 1, idx).view(b, 1, h, w)

        # Jitter the patch: contrast around the patch's own mean, then brightness.
        in_patch = (
            (src_y >= p.source_yx[:, 0].view(b, 1, 1))
            & (src_y < p.source_yx[:, 0].view(b, 1, 1) + ph)
            & (src_x >= p.source_yx[:, 1].view(b, 1, 1))
            & (src_x < p.source_yx[:, 1].view(b, 1, 1) + pw)
        ).unsqueeze(1)
        mean = (shifted * in_patch).sum((2, 3), keepdim=True) / in_patch.sum((2, 3), keepdim=True).clamp_min(1)
        patch = jittered(shifted, mean, p.contrast.view(b, 1, 1, 1), p.brightness.view(b, 1, 1, 1))

        if self.halo:
            # The original's canvas: the patch alone on black, and its fixed inset, which a wider blur outgrows.
            patch = patch * in_patch
            margin = torch.full_like(ph, ORIGINAL_MARGIN_AT_256 * min(h, w) / 256.0)
        else:
            # Blend shape: ellipse or rectangle inset by a margin, filled with the opacity.
            margin = torch.minimum(p.blur_sigma.view(b, 1, 1), 0.25 * torch.minimum(ph, pw))
        half_h, half_w = (ph / 2 - margin).clamp_min(1), (pw / 2 - margin).clamp_min(1)
        v = (ys - ty) / half_h
        uu = (xs - tx) / half_w
        ell = v * v + uu * uu <= 1
        rect = (v.abs() <= 1) & (uu.abs() <= 1)
        shape = torch.where(p.ellipse.view(b, 1, 1), ell, rect).to(dt) * p.opacity.view(b, 1, 1).to(dt)
        alpha = gaussian_blur(shape.unsqueeze(1), p.blur_sigma, self.max_blur_at_256 * min(h, w) / 256.0)
        alpha = alpha * lung.to(dt)
        if not self.halo:  # the halo's black canvas already lies where the shifted source has no content
            alpha = alpha * has_content.unsqueeze(1).to(dt)
        return patch * alpha + images * (1 - alpha)

    def __call__(
        self, images: torch.Tensor, lung: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw and apply in one call."""
        return self.apply(images, lung, self.draw(lung, generator))


def colour_jitter(images: torch.Tensor, amplitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness and contrast of each whole image (B, 1, H, W) in [0, 1] scaled by U(1 ± ``amplitude``):
    contrast around the image's own mean, then brightness, clipped to [0, 1] (the paste jitters its patch the
    same way). Draws 2·B numbers from ``generator``: contrasts first, then brightnesses.
    """
    b = images.shape[0]

    def factor() -> torch.Tensor:
        u = torch.rand(b, device=images.device, generator=generator)
        return (1 - amplitude + 2 * amplitude * u).view(b, 1, 1, 1).to(images.dtype)

    contrast = factor()
    brightness = factor()
    return jittered(images, images.mean((1, 2, 3), keepdim=True), contrast, brightness)


def jittered(x: torch.Tensor, mean: torch.Tensor, contrast: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """``x`` with its contrast scaled around ``mean``, then its brightness scaled, clipped to [0, 1] (the paste's
    patch jitter and :func:`colour_jitter` of whole originals)."""
    return (((x - mean) * contrast + mean) * brightness).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each image of ``x`` (B, 1, H, W) with its own Gaussian ``sigma`` (B,), separably, zero padding.

    The kernel width follows ``max_sigma`` (a setting, not the data: reading the batch's largest sigma would
    stall the GPU every step). A sigma near 0 gives a delta kernel, i.e. the identity.
    """
    b, _, h, w = x.shape
    if max_sigma < 1e-3:
        return x
    smax = max_sigma
    radius = min(int(math.ceil(3 * smax)), max(h, w) - 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    s = sigma.to(torch.float32).clamp_min(1e-2).view(b, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(1, keepdim=True)
    k = k.to(x.dtype)
    # Grouped convolution: the batch becomes channels, so each image gets its own kernel.
    y = F.conv2d(x.view(1, b, h, w), k.view(b, 1, -1, 1), padding=(radius, 0), groups=b)
    y = F.conv2d(y, k.view(b, 1, 1, -1), padding=(0, radius), groups=b)
    return y.view(b, 1, h, w)
