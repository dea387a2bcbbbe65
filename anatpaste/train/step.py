"""One optimiser step of the pretext task (originals = class 0, their pasted copies = class 1), shared by the
training loop and the site fine-tune."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anatpaste.precision import autocast
from anatpaste.score.features import normalise_input


def pretext_step(
    net: torch.nn.Module,
    originals: torch.Tensor,
    pasted: torch.Tensor,
    labels: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    norm: tuple[float, float],
    bf16: bool,
) -> torch.Tensor:
    """Forward (under bf16 autocast when ``bf16``), cross-entropy, backward, SGD and schedule steps.

    Returns the loss tensor, not a float: reading it waits for the device, which the caller decides when to do.
    """
    batch = normalise_input(torch.cat([originals, pasted]), *norm)
    with autocast(batch.device, bf16):
        _, logits = net(batch)
        loss = F.cross_entropy(logits.float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss
