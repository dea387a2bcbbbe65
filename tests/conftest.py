"""Shared fixtures: the real data folder beside the repo and one tiny trained model for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import zhang_files


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory):
    """Train a 64-px model on 48 ZhangLab normals for 120 steps (about a minute on 2 idle CPU cores)."""
    from anatpaste.data import load_image_set
    from anatpaste.train import TrainConfig, train

    data = load_image_set(zhang_files("train", "NORMAL", n=48), 64, progress=False)
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    cfg = TrainConfig(image_size=64, steps=120, batch_size=16, seed=0, eval_every=40, checkpoint_every=0,
                      holdout_fraction=0.3, log_every=1)
    losses: list[float] = []
    summary = train(cfg, data, out, device="cpu", progress=lambda p: losses.append(p.loss))
    return {"path": out, "summary": summary, "losses": losses, "data": data}


@pytest.fixture(scope="session")
def tiny_model(tiny_training) -> Path:
    return tiny_training["path"]
