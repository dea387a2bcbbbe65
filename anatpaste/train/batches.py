"""Training batches, drawn on the device: originals from the normal set and their AnatPaste copies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from anatpaste.data import ImageSet
from anatpaste.paste import AnatPaste
from anatpaste.paste.anatpaste import colour_jitter
from anatpaste.segment import segment_lungs
from anatpaste.train.config import TrainConfig


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


def paste_lungs(train_set: ImageSet, method: str) -> torch.Tensor:
    """The lung masks (N, 1, S, S) bool that ``TrainConfig.paste_lungs = method`` pastes into.

    ``improved`` is the set's own masks. Another method segments the set's uint8 images at the training size,
    as the original code segmented the image it pasted into (the set's masks came from the same resized image
    before its rounding to uint8).
    """
    if method == "improved":
        return train_set.lungs
    grids = train_set.images[:, 0].numpy().astype(np.float32) / 255.0
    return torch.from_numpy(np.stack([segment_lungs(g, method=method) for g in grids])).unsqueeze(1)


@dataclass
class PastedBatches:
    """The whole training set on the device as uint8, and how a batch is drawn from it."""

    images: torch.Tensor  # uint8 (N, 1, S, S)
    lungs: torch.Tensor  # bool (N, 1, S, S), the masks pastes go into
    cdf: torch.Tensor | None  # source-balanced draws, or None for uniform ones
    size: int  # originals per batch
    paster: AnatPaste = field(default_factory=AnatPaste)
    jitter_originals: bool = False  # jitter each whole original (and so its pasted copy) first

    @classmethod
    def on_device(cls, train_set: ImageSet, device: torch.device, config: TrainConfig) -> PastedBatches:
        """The batches of a run with ``config`` (batch size, source balance and the paste recipe)."""
        cdf = source_balanced_cdf(train_set.source) if config.balance_sources else None
        return cls(
            train_set.images.to(device),
            paste_lungs(train_set, config.paste_lungs).to(device),
            cdf.to(device) if cdf is not None else None,
            config.batch_size,
            AnatPaste(halo=config.paste_halo),
            config.jitter_originals,
        )

    def draw(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(originals, pasted copies), float [0, 1] (B, 1, S, S) each; every random number from ``gen``."""
        idx = draw_batch(self.images.shape[0], self.size, gen, self.cdf)
        x = self.images[idx].float() / 255.0
        if self.jitter_originals:  # the paste's own amplitude (±10 %), like the original's ColorJitter(0.1)
            x = colour_jitter(x, self.paster.jitter, generator=gen)
        return x, self.paster(x, self.lungs[idx], generator=gen)
