"""The network and its file: torch modules (no optimiser, no data: those live in ``anatpaste.train``), the
model file's format (:mod:`anatpaste.model.file`) and the shipped files in ``anatpaste/weights/``
(:mod:`anatpaste.model.shipped`)."""

from anatpaste.model.file import load_model, save_model
from anatpaste.model.net import AnatPasteNet
from anatpaste.model.resnet import ResNet18Encoder
from anatpaste.model.shipped import DEFAULT_MODEL, resolve_model

__all__ = ["DEFAULT_MODEL", "AnatPasteNet", "ResNet18Encoder", "load_model", "resolve_model", "save_model"]
