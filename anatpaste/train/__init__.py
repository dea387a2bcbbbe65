"""Self-supervised training: the loop, its configuration, label-free model selection, export."""

from anatpaste.train.config import TrainConfig
from anatpaste.train.loop import TrainProgress, train

__all__ = ["TrainConfig", "TrainProgress", "train"]
