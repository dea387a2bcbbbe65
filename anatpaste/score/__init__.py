"""Scoring: a Gaussian on image embeddings (anomaly score) and per-location Gaussians (heatmap)."""

from anatpaste.score.gaussian import GaussianScorer
from anatpaste.score.heatmap import HeatmapScorer

__all__ = ["GaussianScorer", "HeatmapScorer"]
