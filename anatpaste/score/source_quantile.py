"""One threshold for normals of several sources (hospitals, data sets): the highest of their own quantiles."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# A source needs this many normals for its own quantile to count; fewer and it only joins the pool.
MIN_SOURCE_NORMALS = 10


def highest_source_quantile(
    scores: np.ndarray, source: torch.Tensor | None, quantile: float
) -> tuple[float, list[dict[str, Any]]]:
    """The ``quantile`` of normals' ``scores`` taken per source, the highest kept: the operating threshold of the
    image score (on held-out normals' scores) and the heatmap's display threshold (on their peaks).

    A pooled quantile is dominated by the largest source (1,349 children against 184 adults in the general model)
    and sits below the smaller source's normals, which then get several times the target false-positive rate;
    the highest per-source quantile keeps every source at or under it. Sources with fewer than
    ``MIN_SOURCE_NORMALS`` normals only count in the pool. Returns the value and, per source with enough
    images, ``{"source", "n", "quantile_value"}``.
    """
    pooled = float(np.quantile(scores, quantile))
    if source is None:
        return pooled, []
    members = {int(k): source.numpy() == k for k in np.unique(source.numpy())}
    by_source = [
        {"source": k, "n": int(m.sum()), "quantile_value": float(np.quantile(scores[m], quantile))}
        for k, m in members.items()
        if m.sum() >= MIN_SOURCE_NORMALS
    ]
    if len(by_source) < 2:
        return pooled, by_source
    return max(b["quantile_value"] for b in by_source), by_source
