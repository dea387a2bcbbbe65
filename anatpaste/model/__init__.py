"""Torch modules only: no optimiser, no data, no I/O (those live in ``anatpaste.train``)."""

from anatpaste.model.net import AnatPasteNet
from anatpaste.model.resnet import ResNet18Encoder

__all__ = ["AnatPasteNet", "ResNet18Encoder"]
