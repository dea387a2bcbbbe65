"""Training settings; defaults follow the AnatPaste paper's code where it says something."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from anatpaste.precision import check_precision
from anatpaste.preprocess import NORM_MEAN, NORM_STD

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

# Lung masks the training pastes can go into: ``anatpaste.segment.METHODS`` spelt out, so that the CLI's parser
# does not import scikit-image (a test keeps the two equal).
PASTE_LUNGS = ("improved", "anatpaste")
# Input normalisation (mean, std) of the raw [0, 1] levels: ``shipped`` is this package's fixed one, ``original``
# the AnatPaste code's transforms.Normalize(0.5, 0.5). The model file stores the values, scoring reads them there.
INPUT_NORMS: dict[str, tuple[float, float]] = {"shipped": (NORM_MEAN, NORM_STD), "original": (0.5, 0.5)}


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
        paste_lungs: the lung masks training pastes go into: ``improved`` (the masks of the image set, made with
            ``anatpaste.segment``'s default method) or ``anatpaste`` (the published threshold recipe, ragged and
            smaller, computed from the training images as the original code did). Evaluation, heatmap
            calibration and scoring keep the image set's masks either way.
        paste_halo: paste as the original code did: the patch on a black canvas and the blend shape inset by a
            fixed margin, so a blur wider than the margin blends a dark halo in around the patch (see
            ``anatpaste/paste/anatpaste.py``). Off: nothing black is ever blended in.
        input_norm: ``shipped`` ((x − 0.5) / 0.25) or ``original`` ((x − 0.5) / 0.5, the original code's);
            stored in the model file's ``preprocessing``, which scoring reads.
        jitter_originals: brightness and contrast jitter (±10 %, the paste's amplitude) on the whole original
            before its pasted copy is made from it, as the original code's ColorJitter did, so both classes see
            it. Off: originals are the stored pixels and only the pasted patch is jittered.
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
    paste_lungs: str = "improved"
    paste_halo: bool = False
    input_norm: str = "shipped"
    jitter_originals: bool = False
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
        if self.paste_lungs not in PASTE_LUNGS:
            raise ValueError(f"paste_lungs must be one of {PASTE_LUNGS}, got {self.paste_lungs!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {tuple(INPUT_NORMS)}, got {self.input_norm!r}")
        for name in ("paste_halo", "jitter_originals"):
            if not isinstance(getattr(self, name), bool):  # "false" from a form or a JSON string would be truthy
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def norm(self) -> tuple[float, float]:
        """(mean, std) of the input normalisation: training, the label-free check and the model file use it."""
        return INPUT_NORMS[self.input_norm]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
