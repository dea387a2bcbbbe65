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
    """Images (N, 1, S, S) uint8 and lung masks (N, 1, S, S) bool at the model's input size."""

    images: torch.Tensor
    lungs: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor | list[int]) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[idx], self.lungs[idx], [self.paths[i] for i in idx.tolist()], [])


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
