"""AnatPaste's network: ResNet-18 encoder, projection head, 2-way classifier (original vs pasted)."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from anatpaste.model.resnet import ResNet18Encoder


class AnatPasteNet(nn.Module):
    """Encoder → head (Linear-BN-ReLU 512→512→128) → Linear(128→2), as in the paper's code.

    Only the encoder's 512-d embedding is used for scoring; the head exists for the pretext task.
    """

    def __init__(self, in_channels: int = 3, head_dims: tuple[int, ...] = (512, 512, 128), num_classes: int = 2):
        super().__init__()
        self.encoder = ResNet18Encoder(in_channels)
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(head_dims):
            layers += [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Linear(head_dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (embedding (N, 512), logits (N, 2))."""
        emb = self.encoder(x)
        return emb, self.classifier(self.head(emb))
