"""After training: fit the scorers and the input gate's picture statistics with the final (optionally int8)
encoder and assemble the model file."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import torch

from anatpaste.data import ImageSet
from anatpaste.errors import ModelFileError
from anatpaste.gate.picture import with_input_statistics
from anatpaste.model import AnatPasteNet
from anatpaste.model.file import dequantize_state, load_model, quantize_state
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.score import HeatmapScorer
from anatpaste.score.features import extract
from anatpaste.score.heat_calibration import DISPLAY_HOW, calibrate_heatmap
from anatpaste.score.source_gaussians import SourceGaussians, fit_image_scorer
from anatpaste.score.source_quantile import highest_source_quantile
from anatpaste.segment import DEFAULT_METHOD
from anatpaste.train.config import TrainConfig


def image_score_fit(
    emb: torch.Tensor,
    source: torch.Tensor | None,
    h_emb: torch.Tensor,
    h_source: torch.Tensor | None,
    seed: int,
    quantile: float,
) -> dict[str, Any]:
    """The model file's image scorer (``gaussian``, ``image_scorer``) fitted on the training normals' embeddings
    ``emb``, and its ``threshold`` from the held-out normals' ``h_emb`` (the highest per-source quantile)."""
    gauss = fit_image_scorer(emb, source, seed=seed)
    h_scores = gauss.score(h_emb).numpy()
    value, by_source = highest_source_quantile(h_scores, h_source, quantile)
    return {
        "gaussian": gauss.state_dict(),
        "image_scorer": (
            "one Gaussian per training source, smallest distance in units of the source's median cross-fitted one"
            if isinstance(gauss, SourceGaussians)
            else "one Gaussian of the training normals"
        ),
        "threshold": {
            "value": value,
            "quantile": quantile,
            "holdout_scores": sorted(float(s) for s in h_scores),
            "by_source": by_source,
            "how": (
                "quantile of anomaly scores on held-out normal training images (no abnormal labels)"
                if len(by_source) < 2
                else "highest of the per-source quantiles of anomaly scores on held-out normal training images"
                " (no abnormal labels)"
            ),
        },
    }


def build_payload(
    encoder: ResNet18Encoder,
    config: TrainConfig,
    train_set: ImageSet,
    holdout: ImageSet,
    run: dict[str, Any],
    data_summary: dict[str, Any],
) -> dict[str, Any]:
    """Fit the image Gaussian and heatmap Gaussians on ``train_set``, the threshold on ``holdout``, and the input
    gate's picture statistics (:mod:`anatpaste.gate.picture`) on both.

    The threshold comes from normals the network and the Gaussians never saw, so it estimates the false-
    positive rate on new normals honestly; it uses no abnormal image.
    """
    encoder = encoder.cpu().eval()
    if config.quantize:
        enc_state: dict[str, Any] = quantize_state(encoder.state_dict())
        encoder.load_state_dict(dequantize_state(enc_state))  # fit the statistics with the shipped weights
    else:
        enc_state = {k: v.float() if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    mean, std = config.norm
    emb, grids = extract(encoder, train_set.images, mean, std, with_grid=True)
    heat = HeatmapScorer.fit(grids, config.heatmap_channels, generator=torch.Generator().manual_seed(config.seed))
    h_emb, h_grids = extract(encoder, holdout.images, mean, std, with_grid=True)
    image = image_score_fit(emb, train_set.source, h_emb, holdout.source, config.seed, config.threshold_quantile)
    heat, heat_display, display_by_source = calibrate_heatmap(
        heat, heat.distance_grid(h_grids), holdout.lungs, holdout.source
    )
    payload: dict[str, Any] = {
        "anatpaste_version": run.get("anatpaste_version"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "encoder": enc_state,
        "encoder_quantized": bool(config.quantize),
        **image,
        "heatmap": {
            **heat.state_dict(),
            "display_max": heat_display,
            "display_by_source": display_by_source,
            "display_how": DISPLAY_HOW,
        },
        "preprocessing": {
            "image_size": config.image_size,
            "norm_mean": mean,
            "norm_std": std,
            "resize": "bilinear, square, aspect ratio not kept",
            "segmentation": DEFAULT_METHOD,
        },
        "config": config.to_dict(),
        "training": {
            **run,
            "n_train": len(train_set),
            "n_holdout": len(holdout),
            "data": data_summary,
        },
    }
    # The picture statistics describe every normal of the run, the held-out ones included: they are cross-fitted
    # on their own (each normal's distance comes from a Gaussian fitted without it), so they need no hold-out,
    # and the shipped files' statistics, on which the gate's limits were set, were fitted the same way (on all
    # of ``training.data``). ``encoder`` holds the weights as stored (dequantised above), so the fingerprint
    # they record is the one the gate computes from the file. Fewer than MIN_NORMALS: none, and a warning.
    normals = ImageSet.concat([train_set, holdout])
    return with_input_statistics(payload, normals, encoder=encoder, seed=config.seed)


def load_init_weights(net: AnatPasteNet, path: str | Path) -> None:
    """Initialise the encoder from an AnatPaste model file or a local torchvision ResNet-18 state dict.

    RGB first-layer weights are summed over colour channels (a grey image repeated 3x gives the same output).
    """
    path = Path(path)
    try:
        state = dequantize_state(load_model(path)["encoder"])
    except ModelFileError:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ModelFileError(f"cannot read initial weights {path}: {err}") from err
        if not isinstance(state, dict):
            raise ModelFileError(f"{path} does not hold a state dict") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if state.get("conv1.weight") is not None and state["conv1.weight"].shape[1] == 3:
        state["conv1.weight"] = state["conv1.weight"].sum(1, keepdim=True)
    missing, unexpected = net.encoder.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("num_batches_tracked")]:
        raise ModelFileError(
            f"{path}: weights do not fit ResNet-18 (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
