"""What goes into the objects: one scored radiograph (:class:`Finding`) or one reviewer's verdict (:class:`Review`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Finding:
    """The score of one radiograph with what the input gate said; maps in the source's pixel grid (Rows, Columns)."""

    score: float
    threshold: float
    label: str  # "normal" | "abnormal" at ``threshold``
    model_version: str
    flags: list[str] = field(default_factory=list)  # the input gate's: scored, but the score may mean nothing
    fixed: list[str] = field(default_factory=list)  # what the gate corrected before scoring ("inverted")
    heatmap: np.ndarray | None = None  # float32 (H, W)
    lung_mask: np.ndarray | None = None  # bool (H, W)
    display: np.ndarray | None = None  # float32 (H, W) [0, 1]: the film as scored, for the heatmap capture
    heat_display_max: float = 1.0

    @classmethod
    def of(
        cls,
        result: Any,
        flags: list[str] | None = None,
        fixed: list[str] | None = None,
        display: np.ndarray | None = None,
        heat_display_max: float = 1.0,
    ) -> Finding:
        """From an :class:`anatpaste.score.detector.ScoreResult` and the content gate's flags/fixes."""
        return cls(
            score=float(result.score),
            threshold=float(result.threshold),
            label=result.label,
            model_version=result.model_version,
            flags=list(flags or []),
            fixed=list(fixed or []),
            heatmap=result.heatmap,
            lung_mask=result.lung_mask,
            display=display,
            heat_display_max=float(heat_display_max),
        )

    @property
    def heatmap_coloured(self) -> bool:
        """The heatmap is drawn in colour on a flagged film only (``ScoreResult.heatmap_coloured``)."""
        return self.label == "abnormal"

    @property
    def gate_verdict(self) -> str:
        return "flagged" if self.flags else "accepted"


@dataclass(frozen=True)
class Review:
    """A clinician's verdict on a study, as the server stores it (review.py): who, when, what."""

    verdict: str  # "normal" | "abnormal"
    reviewed_at: str  # ISO 8601, UTC
    reviewer: str | None  # the token's user name; None when the server runs without auth
    ai_score: float | None = None  # the AI result the reviewer saw, if scored
    ai_label: str | None = None
    ai_model_version: str | None = None
