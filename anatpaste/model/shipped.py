"""The model files shipped in ``anatpaste/weights/`` and how a ``--model`` name finds them."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "default.pt"  # general: children + adults (weights/MODEL_CARD.md)
# The pediatric CPU model, trained on ZhangLab normals only (the paper's protocol), shipped beside it.
ZHANGLAB_MODEL = WEIGHTS_DIR / "zhanglab_cpu.pt"


def resolve_model(path: str | os.PathLike | None) -> Path:
    """A model file path; ``None`` is the default model, and a bare shipped name (``zhanglab_cpu``) its file."""
    if path is None:
        return DEFAULT_MODEL
    p = Path(path)
    shipped = WEIGHTS_DIR / f"{p.name}.pt"
    if not p.exists() and p.parent == Path(".") and not p.suffix and shipped.is_file():
        return shipped
    return p
