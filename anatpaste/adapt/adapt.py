"""Site adaptation: calibrate, fine-tune with each recipe of a small ladder, and keep a fine-tuned encoder only
if a label-free check says it beats the calibrated one; the result is always calibrated on the site's normals.

Why a ladder: how much a site's films differ from the model's training normals varies, and so does how far the
encoder should move: a gentle fine-tune (frozen early layers, low lr, replay of the model's own normals) or a
strong one (every layer, higher lr, the site's normals only). Both are tried and the label-free lesion check
picks per site, with no abnormal image (:func:`choose`): the ladder is walked from the mildest change, and a
stronger one must earn its place against the one kept so far, by :data:`MARGIN` and beyond the check's own noise
(a paired bootstrap over the check normals, :func:`anatpaste.adapt.check.paired_gain`), because the check sees
only a fifth of the site's normals and a larger change risks more on films it cannot see. How often its pick
matches the real test AUC on the benchmark's adult sites is measured in ``bench/results/site_adaptation.json``
(``check_agreement``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from anatpaste.adapt.calibrate import MIN_NORMALS, CalibrationError, calibrate
from anatpaste.adapt.check import CheckScores, lesion_scores, lesioned_copies, paired_gain
from anatpaste.adapt.finetune import FinetuneRecipe, StepCallback, finetune, trained_images
from anatpaste.data import ImageSet
from anatpaste.model.file import dequantize_state, encoder_of, quantize_state
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.model.trained_on import with_trained_on
from anatpaste.precision import use_bf16
from anatpaste.train.selection import split_holdout

CHECK_FRACTION = 0.2  # site normals held out of the fine-tune for the check
MIN_CHECK = 5
LESION_COPIES = 4
MARGIN = 0.02  # a recipe must beat the encoder kept so far by this much on the check's mean AUC
SURE = 0.05  # ... and the bootstrap's 5 % quantile of that gain must be above 0

# The ladder tried by default (``--recipe`` names on the command line and the server).
RECIPES: dict[str, FinetuneRecipe] = {
    "gentle": FinetuneRecipe(),
    "strong": FinetuneRecipe(lr=0.01, freeze="none", replay_fraction=0.0),
}
DEFAULT_LADDER = ("gentle", "strong")


def ladder(names: Sequence[str] = DEFAULT_LADDER, **overrides: Any) -> dict[str, FinetuneRecipe]:
    """The named recipes with ``overrides`` (e.g. ``steps``, ``seed``, ``batch_size``) applied to each.

    Raises:
        ValueError: an unknown name or an empty list.
    """
    unknown = [n for n in names if n not in RECIPES]
    if unknown or not names:
        raise ValueError(f"recipes must be among {', '.join(RECIPES)}, got {list(names)}")
    return {n: replace(RECIPES[n], **overrides) for n in dict.fromkeys(names)}


@dataclass
class AdaptResult:
    """The calibrated model, each fine-tuned candidate (calibrated too), the chosen one and why."""

    payload: dict[str, Any]  # the chosen one
    chosen: str  # "calibrated" or the name of the chosen recipe
    calibrated: dict[str, Any]
    finetuned: dict[str, dict[str, Any]]  # recipe name -> calibrated payload with that fine-tuned encoder
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def chose_finetuned(self) -> bool:
        return self.chosen != "calibrated"


def split_check(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fine-tune indices, check indices) of ``n`` (at least MIN_NORMALS) site normals, deterministic for ``seed``."""
    return split_holdout(n, CHECK_FRACTION, seed + 16, minimum=MIN_CHECK)


def _stored_encoder(tuned: ResNet18Encoder, quantized: bool) -> dict[str, Any]:
    """The encoder state as the model file will store it; ``tuned`` is reloaded from it, so it is judged as stored."""
    state: dict[str, Any] = (
        quantize_state(tuned.state_dict())
        if quantized
        else {k: v.float() if v.is_floating_point() else v for k, v in tuned.state_dict().items()}
    )
    tuned.load_state_dict(dequantize_state(state))
    return state


def choose(names: Sequence[str], gain: Callable[[str, str], tuple[float, float]]) -> tuple[str, list[dict[str, Any]]]:
    """Walk the ladder ``names`` from the mildest recipe; each replaces the one kept so far (first ``calibrated``)
    if ``gain(recipe, kept)`` = (the check's gain, its bootstrap lower bound) exceeds :data:`MARGIN` and 0.

    Returns:
        the kept name and one entry per comparison (recipe, against, gain, gain_low, kept).
    """
    kept, steps = "calibrated", []
    for name in names:
        g, low = gain(name, kept)
        better = g > MARGIN and low > 0
        steps.append({"recipe": name, "against": kept, "gain": g, "gain_low": low, "kept": better})
        if better:
            kept = name
    return kept, steps


def adapt(
    payload: dict[str, Any],
    data: ImageSet,
    *,
    recipes: dict[str, FinetuneRecipe] | None = None,
    replay: ImageSet | None = None,
    device: str | torch.device = "cpu",
    progress: StepCallback | None = None,
    summary: dict[str, Any] | None = None,
) -> AdaptResult:
    """Adapt ``payload`` to the site whose normals are ``data`` (see the module docstring).

    Args:
        recipes: name -> fine-tune recipe, tried in order (default: :func:`ladder`). Recipes with a
            ``replay_fraction`` draw that share of each batch from ``replay`` when it is given.
        progress: called with (step, total, loss), the step counted over all recipes.

    Raises:
        CalibrationError: fewer than :data:`MIN_NORMALS` images.
    """
    if len(data) < MIN_NORMALS:
        raise CalibrationError(f"{len(data)} readable normal images; adaptation needs at least {MIN_NORMALS}")
    recipes = recipes or ladder()
    seed = next(iter(recipes.values())).seed
    t0 = time.perf_counter()
    pre = payload["preprocessing"]
    norm = (float(pre["norm_mean"]), float(pre["norm_std"]))
    tune_idx, check_idx = split_check(len(data), seed)
    tune, check = data.subset(tune_idx), data.subset(check_idx)
    quantized = bool(payload.get("encoder_quantized", True))
    base = encoder_of(payload)
    lesioned = lesioned_copies(check, LESION_COPIES, seed)
    scores: dict[str, CheckScores] = {"calibrated": lesion_scores(base, tune, check, lesioned, norm)}
    total = sum(r.steps for r in recipes.values())
    done = 0
    tuned: dict[str, tuple[ResNet18Encoder, dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for name, recipe in recipes.items():
        t1 = time.perf_counter()

        def step_cb(step: int, _total: int, loss: float, offset: int = done) -> None:
            if progress is not None:
                progress(offset + step, total, loss)

        enc = finetune(
            dequantize_state(payload["encoder"]), tune, recipe, replay, device=device, progress=step_cb, norm=norm
        )
        tuned[name] = (enc, _stored_encoder(enc, quantized))
        scores[name] = lesion_scores(enc, tune, check, lesioned, norm)
        seconds[name] = round(time.perf_counter() - t1, 2)
        done += recipe.steps
    chosen, steps = choose(list(recipes), lambda a, b: paired_gain(scores[b], scores[a], quantile=SURE, seed=seed))
    verdict = {
        "chosen": chosen,
        **{name: s.aucs() for name, s in scores.items()},
        "ladder": steps,
        "margin": MARGIN,
        "bootstrap_quantile": SURE,
        "n_check": len(check),
        "n_finetune": len(tune),
        "lesion_copies": LESION_COPIES,
        "how": (
            "mean ROC AUC over synthetic lesion families the fine-tune never saw (opacity, nodules, haze): "
            "held-out site normals vs lesioned copies, Gaussian fitted on the other site normals; walking the "
            f"ladder from the mildest recipe, one replaces the encoder kept so far if it beats it by {MARGIN} and "
            f"the {SURE:.0%} quantile of that gain over a paired bootstrap of the check normals is above 0"
        ),
    }
    adaptation = {
        "recipes": {n: r.to_dict() for n, r in recipes.items()},
        "bf16": use_bf16(next(iter(recipes.values())).precision, torch.device(device)),
        "n_replay": len(replay) if replay is not None else 0,
        "finetune_seconds": seconds,
        "check": verdict,
    }
    extra = summary or {}
    calibrated = calibrate(payload, data, encoder=base, summary=extra)
    calibrated["adaptation"] = {**adaptation, "encoder": "calibrated (the parent model's encoder)"}
    finetuned = {}
    for name, (enc, state) in tuned.items():
        seen = trained_images(tune, recipes[name], replay)
        cand = with_trained_on({**payload, "encoder": state, "encoder_quantized": quantized}, seen, parent=payload)
        # Its threshold comes from the check normals alone: the fine-tune learnt the others (see calibrate).
        finetuned[name] = calibrate(cand, data, encoder=enc, summary=extra, threshold_from=check_idx)
        finetuned[name]["adaptation"] = {
            **adaptation,
            "encoder": f"fine-tuned ({name})",
            "recipe": recipes[name].to_dict(),
        }
    for p in (calibrated, *finetuned.values()):
        p["adaptation"]["seconds"] = round(time.perf_counter() - t0, 2)
    chosen_payload = calibrated if chosen == "calibrated" else finetuned[chosen]
    return AdaptResult(chosen_payload, chosen, calibrated, finetuned, verdict)
