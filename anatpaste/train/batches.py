"""Training batches, drawn on the device: originals from the normal set and their AnatPaste copies."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from anatpaste.data import ImageSet
from anatpaste.paste import AnatPaste


def source_balanced_cdf(source: torch.Tensor | None) -> torch.Tensor | None:
    """Cumulative draw probabilities that give every source the same share (None: one source, uniform draws)."""
    if source is None or int(source.max()) == int(source.min()):
        return None
    weight = 1.0 / torch.bincount(source).double()[source]
    return (weight.cumsum(0) / weight.sum()).float()


def draw_batch(n: int, b: int, gen: torch.Generator, cdf: torch.Tensor | None) -> torch.Tensor:
    """``b`` image indices: uniform, or by inverse CDF (no ``torch.multinomial``: it syncs CUDA every call)."""
    if cdf is None:
        return torch.randint(0, n, (b,), device=gen.device, generator=gen)
    u = torch.rand(b, device=gen.device, generator=gen)
    return torch.searchsorted(cdf, u).clamp_max(n - 1)


@dataclass
class PastedBatches:
    """The whole training set on the device as uint8, and how a batch is drawn from it."""

    images: torch.Tensor  # uint8 (N, 1, S, S)
    lungs: torch.Tensor  # bool (N, 1, S, S)
    cdf: torch.Tensor | None  # source-balanced draws, or None for uniform ones
    size: int  # originals per batch
    paster: AnatPaste = field(default_factory=AnatPaste)

    @classmethod
    def on_device(cls, train_set: ImageSet, device: torch.device, size: int, balance_sources: bool) -> PastedBatches:
        cdf = source_balanced_cdf(train_set.source) if balance_sources else None
        return cls(
            train_set.images.to(device), train_set.lungs.to(device), cdf.to(device) if cdf is not None else None, size
        )

    def draw(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(originals, pasted copies), float [0, 1] (B, 1, S, S) each; every random number from ``gen``."""
        idx = draw_batch(self.images.shape[0], self.size, gen, self.cdf)
        x = self.images[idx].float() / 255.0
        return x, self.paster(x, self.lungs[idx], generator=gen)
