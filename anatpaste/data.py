"""Find radiographs in folders and hold a normal training set as uint8 tensors with their lung masks."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anatpaste.errors import RadiographError, UnreadableImageError
from anatpaste.io import SUPPORTED_SUFFIXES, read_radiograph
from anatpaste.preprocess import resize_square, to_uint8
from anatpaste.segment import segment_lungs


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every readable-looking radiograph file below ``folder`` (recursive), sorted for reproducibility."""
    root = Path(folder)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UnreadableImageError(f"no such file or folder: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


@dataclass
class ImageSet:
    """Images (N, 1, S, S) uint8 and lung masks (N, 1, S, S) bool at the model's input size.

    ``source`` (N,) int64, optional: which source (hospital, data set) each image came from, for training that
    draws the sources equally often (``TrainConfig.balance_sources``).
    """

    images: torch.Tensor
    lungs: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]]
    source: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor | list[int]) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        src = self.source[idx] if self.source is not None else None
        return ImageSet(self.images[idx], self.lungs[idx], [self.paths[i] for i in idx.tolist()], [], src)

    @staticmethod
    def concat(sets: list[ImageSet]) -> ImageSet:
        """One set from several, each becoming its own ``source`` (0, 1, ... in the order given)."""
        return ImageSet(
            torch.cat([s.images for s in sets]),
            torch.cat([s.lungs for s in sets]),
            [p for s in sets for p in s.paths],
            [k for s in sets for k in s.skipped],
            torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(sets)]),
        )


def load_image_set(paths: Iterable[str | os.PathLike], size: int, progress: bool = True) -> ImageSet:
    """Read, resize and segment every image once; unreadable files are skipped and reported, not fatal."""
    paths = [str(p) for p in paths]
    images, lungs, kept, skipped = [], [], [], []
    for p in tqdm(paths, desc="reading + segmenting", unit="img", disable=not progress):
        try:
            img = resize_square(read_radiograph(p).pixels, size)
        except RadiographError as err:
            skipped.append((p, str(err)))
            continue
        images.append(to_uint8(img))
        lungs.append(segment_lungs(img))
        kept.append(p)
    if not kept:
        raise UnreadableImageError(f"none of the {len(paths)} files could be read as a radiograph")
    return ImageSet(
        torch.from_numpy(np.stack(images)).unsqueeze(1),
        torch.from_numpy(np.stack(lungs)).unsqueeze(1),
        kept,
        skipped,
    )
