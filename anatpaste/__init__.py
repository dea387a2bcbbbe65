"""AnatPaste: self-supervised anomaly detection on chest radiographs (read → segment → paste → train → score)."""

__version__ = "0.1.0"
