"""Turn uint8 image batches into network input and read embeddings / feature grids, in eval mode."""

from __future__ import annotations

from typing import Literal, overload

import torch

from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.precision import autocast
from anatpaste.score.heatmap import feature_grid


def normalise_input(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 1, H, W) or float [0, 1] → normalised float32, channels_last for faster convolutions."""
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def autocast_for(device: torch.device) -> torch.autocast:
    """Scoring's precision: bf16 autocast on CUDA, fp32 on CPU. Scoring is one film at a time, where bf16 is
    slower than fp32 even on CPUs with native bf16 (0.91x, ``bench/results/cpu_train_throughput.json``), and
    one precision keeps a film's score the same in every path."""
    return autocast(device, device.type == "cuda")


@overload
def extract(
    encoder: ResNet18Encoder,
    images: torch.Tensor,
    mean: float,
    std: float,
    with_grid: Literal[False] = False,
    batch_size: int = 128,
) -> tuple[torch.Tensor, None]: ...
@overload
def extract(
    encoder: ResNet18Encoder,
    images: torch.Tensor,
    mean: float,
    std: float,
    with_grid: Literal[True],
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def extract(
    encoder: ResNet18Encoder,
    images: torch.Tensor,
    mean: float,
    std: float,
    with_grid: bool,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@torch.no_grad()
def extract(
    encoder: ResNet18Encoder,
    images: torch.Tensor,
    mean: float,
    std: float,
    with_grid: bool = False,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings (N, 512) and optionally feature grids (N, 384, h, w), both float32 on the CPU."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    embs, grids = [], []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = normalise_input(images[i : i + batch_size].to(device), mean, std)
            with autocast_for(device):
                if with_grid:
                    emb, maps = encoder(x, return_maps=True)
                    grids.append(feature_grid(maps).float().cpu())
                else:
                    emb = encoder(x)
            embs.append(emb.float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(embs), (torch.cat(grids) if with_grid else None)
