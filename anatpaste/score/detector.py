"""Score radiographs with a trained model file: anomaly score, label at the stored threshold, heatmap, lung mask."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anatpaste.image import as_unit_image
from anatpaste.model.file import encoder_of, load_model
from anatpaste.model.shipped import resolve_model
from anatpaste.preprocess import model_grid
from anatpaste.score.features import extract
from anatpaste.score.heat_calibration import lung_window
from anatpaste.score.heatmap import HeatmapScorer
from anatpaste.score.source_gaussians import image_scorer
from anatpaste.segment import DEFAULT_METHOD, METHODS, segment_lungs


@dataclass
class ScoreResult:
    """One radiograph's result. Maps are in the input image's own geometry (H, W)."""

    score: float
    threshold: float
    is_abnormal: bool
    heatmap: np.ndarray | None  # float32 (H, W), Mahalanobis distance per location
    lung_mask: np.ndarray | None  # bool (H, W)
    model_version: str

    @property
    def label(self) -> str:
        return "abnormal" if self.is_abnormal else "normal"

    @property
    def heatmap_coloured(self) -> bool:
        """Whether the heatmap is drawn in colour: on a flagged film only. The map says where a flagged film is
        unusual; on a film below the threshold colour would contradict its label, and a normal film's map peak
        passes the display threshold far more often than its score passes the threshold at a site unlike the
        held-out normals (adult test normals: about 1 in 5, ``bench/results/heatmap_in_lungs.json``)."""
        return self.is_abnormal

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "label": self.label,
            "model_version": self.model_version,
        }


class Detector:
    """A loaded model file, ready to score (CPU by default; thread count left to torch).

    Example:
        >>> det = Detector.load()  # the shipped default model
        >>> det.image_size > 0
        True
    """

    def __init__(self, payload: dict[str, Any], version: str, device: str | torch.device = "cpu") -> None:
        self.payload = payload
        self.version = version
        self.device = torch.device(device)
        pre = payload["preprocessing"]
        self.image_size = int(pre["image_size"])
        self.mean, self.std = float(pre["norm_mean"]), float(pre["norm_std"])
        # The lung mask is drawn with the method the model was trained with (older files: the default).
        method = str(pre.get("segmentation", DEFAULT_METHOD))
        self.segmentation = method if method in METHODS else DEFAULT_METHOD
        self.encoder = encoder_of(payload).to(self.device)
        self.gaussian = image_scorer(payload["gaussian"])  # one Gaussian, or one per training source
        self.heat = HeatmapScorer.from_state_dict(payload["heatmap"])
        self.heat_display_max = float(payload["heatmap"].get("display_max", 1.0))
        self.threshold = float(payload["threshold"]["value"])

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Detector:
        """Load ``path`` (default: the shipped model; ``"zhanglab_cpu"``: the pediatric one). The version is
        derived from the file's content."""
        path = resolve_model(path)
        payload = load_model(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return cls(payload, version=f"{path.stem}-{digest}", device=device)

    def _input(self, image: np.ndarray) -> torch.Tensor:
        return self._grid(as_unit_image(image))

    def _grid(self, unit: np.ndarray) -> torch.Tensor:
        """A unit image (``as_unit_image``'s output) on the model's input grid: uint8 (1, 1, S, S)."""
        return torch.from_numpy(model_grid(unit, self.image_size)).view(1, 1, self.image_size, self.image_size)

    def score_many(self, images: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Anomaly scores only (no maps), batched: for evaluation and the worklist."""
        scores = []
        for i in range(0, len(images), batch_size):
            scores.append(self.score_grids(torch.cat([self._input(im) for im in images[i : i + batch_size]])))
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def score_grids(self, grids: torch.Tensor) -> np.ndarray:
        """Anomaly scores of images already on the model's grid: uint8 (N, 1, S, S), e.g. an ImageSet's."""
        emb, _ = extract(self.encoder, grids, self.mean, self.std)
        return self.gaussian.score(emb).numpy()

    def score(self, image: np.ndarray, maps: bool = True) -> ScoreResult:
        """Score one radiograph (float32 (H, W) [0, 1]); with ``maps`` also heatmap and lung mask at (H, W)."""
        unit = as_unit_image(image)  # checked and scaled once, for the network and the segmentation
        x = self._grid(unit)
        emb, grid = extract(self.encoder, x, self.mean, self.std, with_grid=maps)
        s = float(self.gaussian.score(emb)[0])
        heat: np.ndarray | None = None
        lung: np.ndarray | None = None
        if maps:
            assert grid is not None  # extract(with_grid=True) returns the grids
            h, w = image.shape
            # Segment the full-resolution image (segment_lungs works at ~256 px internally and scales the
            # mask back), not the network's small input: the outline is drawn over the original film.
            lung = segment_lungs(unit, method=self.segmentation)
            heat_small = self.heat.heatmap(grid, (self.image_size, self.image_size))
            full = F.interpolate(heat_small.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            # AnatPaste's anomalies live in the lung field, and so does the map: zero outside a dilated mask.
            heat = (full * lung_window(lung)).numpy().astype(np.float32)
        return ScoreResult(s, self.threshold, s > self.threshold, heat, lung, self.version)
