"""Which normals a model's encoder has trained on, as fingerprints of their input images, so that ``calibrate``
can leave them out of its threshold.

Why: an encoder maps the films it trained on closer together than new ones, so their cross-fitted scores are
lower than a new normal's, and a threshold set from them flags more new normals than its target (measured at
NIH with the shipped model: 23 % against 5 %). That happens whenever a site calibrates on normals it fine-tuned
on before (``adapt`` and then ``calibrate`` on the same confirmed normals), or on the model's own training set.

A fingerprint is the first 8 bytes of a BLAKE2b digest of the image as the model takes it (uint8, resized to
its input side), as a signed int64. So the same file read again matches, whatever its name or folder; a film
exported anew (other pixels) does not, and counts as unseen. Fingerprints hold only for the input side they were
taken at: a model trained at another side than its parent inherits none of the parent's.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

KEY = "trained_on"
HOW = (
    "fingerprints (BLAKE2b, 8 bytes) of the uint8 input images the encoder was trained on, this file's run and "
    "every parent at the same input side"
)


def image_fingerprints(images: torch.Tensor) -> torch.Tensor:
    """(N,) int64 fingerprint of each (1, S, S) uint8 image of ``images`` (N, 1, S, S)."""
    flat = images.to(torch.uint8).reshape(images.shape[0], -1).contiguous().numpy()
    side = images.shape[-1].to_bytes(4, "little")
    out = [
        int.from_bytes(hashlib.blake2b(side + row.tobytes(), digest_size=8).digest(), "little", signed=True)
        for row in flat
    ]
    return torch.tensor(out, dtype=torch.int64)


def stored_fingerprints(payload: dict[str, Any], image_size: int) -> torch.Tensor:
    """The fingerprints ``payload`` records at ``image_size`` (empty if none, or taken at another side)."""
    rec = payload.get(KEY)
    if not isinstance(rec, dict) or int(rec.get("image_size", -1)) != image_size:
        return torch.empty(0, dtype=torch.int64)
    return torch.as_tensor(rec["fingerprints"], dtype=torch.int64)


def with_trained_on(
    payload: dict[str, Any], images: torch.Tensor, parent: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``payload`` recording ``images`` as trained on, together with what ``parent`` (the model whose encoder
    this one started from) records at the same input side."""
    size = int(images.shape[-1])
    inherited = stored_fingerprints(parent, size) if parent is not None else torch.empty(0, dtype=torch.int64)
    fps = torch.unique(torch.cat([inherited, image_fingerprints(images)]))  # sorted
    return {**payload, KEY: {"image_size": size, "n": int(fps.numel()), "fingerprints": fps, "how": HOW}}


def seen_by_encoder(payload: dict[str, Any], images: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which of ``images`` the payload's encoder has trained on (all False if it records none)."""
    stored = stored_fingerprints(payload, int(images.shape[-1]))
    if stored.numel() == 0:
        return torch.zeros(images.shape[0], dtype=torch.bool)
    return torch.isin(image_fingerprints(images), stored)
