"""Site adaptation: calibrate, fine-tune gently, and keep the fine-tuned encoder only if a label-free check
says it is better than the calibrated one; the result is always calibrated on all the site's normals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from anatpaste.adapt.calibrate import MIN_NORMALS, CalibrationError, calibrate
from anatpaste.adapt.check import lesion_check, lesioned_copies
from anatpaste.adapt.finetune import FinetuneRecipe, StepCallback, finetune
from anatpaste.data import ImageSet
from anatpaste.model.file import dequantize_state, encoder_of, quantize_state
from anatpaste.precision import use_bf16
from anatpaste.train.selection import split_holdout

CHECK_FRACTION = 0.2  # site normals held out of the fine-tune for the check
MIN_CHECK = 5
LESION_COPIES = 4
MARGIN = 0.02  # the fine-tuned encoder must beat the calibrated one by this much on the check's mean AUC


@dataclass
class AdaptResult:
    """Both calibrated candidates, the chosen one and why."""

    payload: dict[str, Any]  # the chosen one
    chosen: str  # "finetuned" or "calibrated"
    calibrated: dict[str, Any]
    finetuned: dict[str, Any]
    check: dict[str, Any] = field(default_factory=dict)


def split_check(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fine-tune indices, check indices) of ``n`` (at least MIN_NORMALS) site normals, deterministic for ``seed``."""
    return split_holdout(n, CHECK_FRACTION, seed + 16, minimum=MIN_CHECK)


def adapt(
    payload: dict[str, Any],
    data: ImageSet,
    *,
    recipe: FinetuneRecipe | None = None,
    replay: ImageSet | None = None,
    device: str | torch.device = "cpu",
    progress: StepCallback | None = None,
    summary: dict[str, Any] | None = None,
) -> AdaptResult:
    """Adapt ``payload`` to the site whose normals are ``data`` (see the module docstring).

    Raises:
        CalibrationError: fewer than :data:`MIN_NORMALS` images.
    """
    if len(data) < MIN_NORMALS:
        raise CalibrationError(f"{len(data)} readable normal images; adaptation needs at least {MIN_NORMALS}")
    recipe = recipe or FinetuneRecipe()
    t0 = time.perf_counter()
    pre = payload["preprocessing"]
    norm = (float(pre["norm_mean"]), float(pre["norm_std"]))
    tune_idx, check_idx = split_check(len(data), recipe.seed)
    tune, check = data.subset(tune_idx), data.subset(check_idx)

    base = encoder_of(payload)
    tuned = finetune(
        dequantize_state(payload["encoder"]), tune, recipe, replay, device=device, progress=progress, norm=norm
    )
    quantized = bool(payload.get("encoder_quantized", True))
    tuned_state: dict[str, Any] = (
        quantize_state(tuned.state_dict()) if quantized
        else {k: v.float() if v.is_floating_point() else v for k, v in tuned.state_dict().items()}
    )
    tuned.load_state_dict(dequantize_state(tuned_state))  # judge the weights as they will be stored
    t_tune = time.perf_counter() - t0

    lesioned = lesioned_copies(check, LESION_COPIES, recipe.seed)
    fig_base = lesion_check(base, tune, check, lesioned, norm)
    fig_tuned = lesion_check(tuned, tune, check, lesioned, norm)
    chosen = "finetuned" if fig_tuned["mean"] > fig_base["mean"] + MARGIN else "calibrated"
    verdict = {
        "chosen": chosen,
        "calibrated": fig_base,
        "finetuned": fig_tuned,
        "margin": MARGIN,
        "n_check": len(check),
        "n_finetune": len(tune),
        "lesion_copies": LESION_COPIES,
        "how": (
            "mean ROC AUC over synthetic lesion families the fine-tune never saw (opacity, nodules, haze): "
            "held-out site normals vs lesioned copies, Gaussian fitted on the other site normals"
        ),
    }
    adaptation = {
        "recipe": recipe.to_dict(),
        "bf16": use_bf16(recipe.precision, torch.device(device)),
        "n_replay": len(replay) if replay is not None else 0,
        "finetune_seconds": round(t_tune, 2),
        "check": verdict,
    }
    extra = summary or {}
    calibrated = calibrate(payload, data, encoder=base, summary=extra)
    tuned_payload = {**payload, "encoder": tuned_state, "encoder_quantized": quantized}
    # Its threshold comes from the check normals alone: the fine-tune learnt the others (see calibrate).
    finetuned = calibrate(tuned_payload, data, encoder=tuned, summary=extra, threshold_from=check_idx)
    for p in (calibrated, finetuned):
        p["adaptation"] = {**adaptation, "seconds": round(time.perf_counter() - t0, 2)}
    finetuned["adaptation"]["encoder"] = "finetuned"
    calibrated["adaptation"]["encoder"] = "calibrated (the parent model's encoder)"
    chosen_payload = finetuned if chosen == "finetuned" else calibrated
    return AdaptResult(chosen_payload, chosen, calibrated, finetuned, verdict)
