"""Training settings; defaults follow the AnatPaste paper's code where it says something."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from anatpaste.precision import check_precision

# Closed ranges of the numeric settings (lr, holdout_fraction and threshold_quantile are checked below).
RANGES: dict[str, tuple[float, float]] = {
    "image_size": (64, 1024),
    "steps": (1, 1_000_000),
    "batch_size": (2, 4096),
    "momentum": (0.0, 0.999),
    "weight_decay": (0.0, 1.0),
    "eval_every": (0, 1_000_000),
    "checkpoint_every": (0, 1_000_000),
    "log_every": (1, 1_000_000),
    "heatmap_channels": (1, 384),
}


@dataclass
class TrainConfig:
    """Everything that changes a training run's result (stored in the model file and the checkpoint).

    Args:
        image_size: square input side (paper: 256).
        steps: optimiser steps (paper: 65,536).
        batch_size: originals per step; each step sees as many pasted copies as well (paper: 64 + 64).
        lr, momentum, weight_decay: SGD with a cosine schedule (paper: 0.03, 0.9, 3e-5).
        seed: seeds the model init, the split and every random draw (one generator each, no global RNG).
        holdout_fraction: normals held out from training for label-free selection and the threshold.
        threshold_quantile: operating threshold = this quantile of held-out normals' scores.
        eval_every: steps between label-free evaluations (synthetic-anomaly AUC on held-out normals).
        select: "synthetic-auc" keeps the step with the best synthetic AUC, "last" keeps the last step.
        checkpoint_every: steps between resumable checkpoints (0 = only at the end).
        log_every: steps between loss read-outs and progress calls (each read-out syncs the GPU).
        init_weights: optional local file with encoder weights (torchvision resnet18 layout or a model file).
        quantize: store the encoder in int8 (statistics are then fitted with the quantised weights).
        precision: ``auto`` (bf16 autocast where the device runs it natively: CUDA, CPUs with AVX-512 BF16/AMX),
            ``bf16`` or ``fp32``; see ``anatpaste/precision.py``.
        balance_sources: draw each source of normals (e.g. each hospital, see ``ImageSet.source``) equally
            often, whatever its size; otherwise every image is equally likely.
    """

    image_size: int = 256
    steps: int = 2000
    batch_size: int = 64
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 3e-5
    seed: int = 0
    holdout_fraction: float = 0.1
    threshold_quantile: float = 0.95
    eval_every: int = 250
    select: str = "synthetic-auc"
    checkpoint_every: int = 250
    log_every: int = 10
    init_weights: str | None = None
    quantize: bool = True
    heatmap_channels: int = 64
    precision: str = "auto"
    balance_sources: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The one place training settings are checked: the CLI and the server take their defaults from this
        # class and their range errors from here (a value outside them would fail later, e.g. log_every=0
        # divided by zero in the loop).
        for name, (lo, hi) in RANGES.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        if not 0 < self.lr < 10:
            raise ValueError(f"lr must be in (0, 10), got {self.lr}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.5 <= self.threshold_quantile < 1:
            raise ValueError(f"threshold_quantile must be in [0.5, 1), got {self.threshold_quantile}")
        check_precision(self.precision)
        if self.select not in ("synthetic-auc", "last"):
            raise ValueError(f"select must be 'synthetic-auc' or 'last', got {self.select!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
