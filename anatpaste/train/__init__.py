"""Self-supervised training: its configuration (``config``), where a process runs (``processes``), the run's
state and checkpoint (``state``), the pasted batches (``batches``), one optimiser step (``step``), the loop
(``loop``), label-free model selection (``selection``) and the model file's export (``export``)."""

from anatpaste.train.config import TrainConfig
from anatpaste.train.loop import TrainProgress, train

__all__ = ["TrainConfig", "TrainProgress", "train"]
