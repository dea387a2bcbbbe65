"""Scoring: a Gaussian on image embeddings (anomaly score), per-location Gaussians (heatmap), the
:class:`Detector` that applies a model file to a radiograph, and the PNG overlay people look at."""

from anatpaste.score.detector import Detector, ScoreResult
from anatpaste.score.gaussian import GaussianScorer
from anatpaste.score.heatmap import HeatmapScorer

__all__ = ["Detector", "GaussianScorer", "HeatmapScorer", "ScoreResult"]
