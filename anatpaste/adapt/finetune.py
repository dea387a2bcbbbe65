"""Fine-tune a model file's encoder on a site's normals: a gentle AnatPaste run meant to adapt, not relearn.

What makes it gentle, and why:
- the early layers (stem, layer1, layer2) stay frozen, BatchNorm included: low-level filters transfer
  across hospitals, and with a few dozen normals they are what overfits first;
- a low learning rate with a cosine decay;
- replay: half of each batch comes from the model's own training normals (when given), so the encoder keeps
  what it knew while it learns the site's films.
On CPUs with native bf16 the step runs under bf16 autocast (about twice as fast here, see
``anatpaste/precision.py``); elsewhere fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from anatpaste.data import ImageSet
from anatpaste.model import AnatPasteNet
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.paste import AnatPaste
from anatpaste.precision import check_precision, use_bf16
from anatpaste.train.step import pretext_step

FREEZE_LEVELS = ("none", "stem", "layer1", "layer2", "layer3")


@dataclass(frozen=True)
class FinetuneRecipe:
    """Settings of one fine-tune (stored in the adapted model file).

    Args:
        steps: optimiser steps.
        batch_size: originals per step (local + replay); as many pasted copies are added.
        lr: SGD learning rate at the start of the cosine schedule.
        freeze: the encoder is frozen up to and including this stage (``none`` trains everything).
        replay_fraction: share of each batch's originals drawn from the replay set (0 = local only).
        seed: model head init, batch draws and pastes.
        precision: ``auto`` (bf16 where the device runs it natively), ``bf16`` or ``fp32``.
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 0.003
    freeze: str = "layer2"
    replay_fraction: float = 0.5
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"steps must be >= 1 and batch_size >= 2, got {self.steps}, {self.batch_size}")
        if not 0 < self.lr < 10:
            raise ValueError(f"lr must be in (0, 10), got {self.lr}")
        if self.freeze not in FREEZE_LEVELS:
            raise ValueError(f"freeze must be one of {FREEZE_LEVELS}, got {self.freeze!r}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
        check_precision(self.precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frozen_modules(encoder: ResNet18Encoder, freeze: str) -> list[torch.nn.Module]:
    """The encoder's modules up to and including stage ``freeze``."""
    stages: list[tuple[str, list[torch.nn.Module]]] = [
        ("stem", [encoder.conv1, encoder.bn1]),
        ("layer1", [encoder.layer1]),
        ("layer2", [encoder.layer2]),
        ("layer3", [encoder.layer3]),
    ]
    if freeze == "none":
        return []
    out: list[torch.nn.Module] = []
    for name, mods in stages:
        out += mods
        if name == freeze:
            return out
    raise ValueError(f"freeze must be one of {FREEZE_LEVELS}, got {freeze!r}")


def replay_per_batch(recipe: FinetuneRecipe, replay: ImageSet | None) -> int:
    """How many of each batch's originals the fine-tune draws from ``replay``."""
    return round(recipe.batch_size * recipe.replay_fraction) if replay is not None and len(replay) else 0


def trained_images(local: ImageSet, recipe: FinetuneRecipe, replay: ImageSet | None = None) -> torch.Tensor:
    """The images a fine-tune with ``recipe`` draws its batches from: ``local``, and ``replay`` if it is used."""
    if replay is not None and replay_per_batch(recipe, replay):
        return torch.cat([local.images, replay.images])
    return local.images


StepCallback = Callable[[int, int, float], None]  # (step, total, loss)


def finetune(
    encoder_state: dict[str, torch.Tensor],
    local: ImageSet,
    recipe: FinetuneRecipe,
    replay: ImageSet | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: StepCallback | None = None,
    norm: tuple[float, float] = (0.5, 0.25),
) -> ResNet18Encoder:
    """Fine-tune an encoder (fp32 state dict) on ``local`` normals (+ ``replay``) and return it, on the CPU.

    The projection head and classifier are new (a model file stores only the encoder); they start from a
    seeded initialisation. Nothing global is seeded: the head is built under :func:`torch.random.fork_rng`.
    A payload given this encoder holds its parent's input-gate statistics, fitted with another encoder:
    :func:`anatpaste.adapt.calibrate.calibrate` refits them (as ``adapt`` calls it for every candidate).
    """
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(recipe.seed)  # the CPU generator only: fork_rng restores just that one
        net = AnatPasteNet(in_channels=1)
    net.encoder.load_state_dict(encoder_state)
    frozen = frozen_modules(net.encoder, recipe.freeze)
    for m in frozen:
        m.requires_grad_(False)
    net = net.to(dev).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes memory_format; torch's overloads omit it
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=3e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.steps)
    gen = torch.Generator(device=dev).manual_seed(recipe.seed + 1)
    paster = AnatPaste()
    n_replay = replay_per_batch(recipe, replay)
    n_local = recipe.batch_size - n_replay
    pools = [(local.images.to(dev), local.lungs.to(dev), n_local)]
    if replay is not None and n_replay:
        pools.append((replay.images.to(dev), replay.lungs.to(dev), n_replay))
    labels = torch.cat([torch.zeros(recipe.batch_size), torch.ones(recipe.batch_size)]).long().to(dev)
    bf16 = use_bf16(recipe.precision, dev)
    net.train()
    for m in frozen:
        m.eval()  # frozen BatchNorm keeps its statistics too
    for step in range(1, recipe.steps + 1):
        xs, ms = [], []
        for imgs, lungs, k in pools:
            idx = torch.randint(0, imgs.shape[0], (k,), device=dev, generator=gen)
            xs.append(imgs[idx])
            ms.append(lungs[idx])
        x = torch.cat(xs).float() / 255.0
        xp = paster(x, torch.cat(ms), generator=gen)
        loss = pretext_step(net, x, xp, labels, opt, sched, norm, bf16)
        if progress is not None:
            progress(step, recipe.steps, float(loss.detach()))
    return net.encoder.cpu().to(memory_format=torch.contiguous_format).eval()
