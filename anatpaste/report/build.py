"""Build the requested objects for one scored radiograph, and write them as files."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset

from anatpaste.report.capture import heatmap_capture
from anatpaste.report.finding import Finding
from anatpaste.report.result_sr import result_sr
from anatpaste.report.seg import lung_seg
from anatpaste.report.source import source_header

KINDS = ("sr", "seg", "map")


def build_objects(source: Dataset, finding: Finding, kinds: Iterable[str] = KINDS) -> dict[str, Dataset]:
    """``{kind: dataset}`` for the requested kinds (``sr``, ``seg``, ``map``), in that order.

    Raises:
        ValueError: an unknown kind, or ``seg``/``map`` asked without the finding's maps.
    """
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown object kinds {unknown}; known: {', '.join(KINDS)}")
    header = source_header(source)
    out: dict[str, Dataset] = {}
    for kind in KINDS:
        if kind not in kinds:
            continue
        if kind == "sr":
            out[kind] = result_sr(header, finding)
        elif kind == "seg":
            if finding.lung_mask is None:
                raise ValueError("a lung SEG needs the finding's lung mask")
            out[kind] = lung_seg(header, finding.lung_mask, finding.model_version)
        else:
            out[kind] = heatmap_capture(header, finding)
        if kind != "sr":
            _keep_lossy(out[kind], source)
    return out


def _keep_lossy(image: Dataset, source: Dataset) -> None:
    """An image derived from a lossy-compressed film says so, also when the film's ratio is unknown."""
    if source.get("LossyImageCompression") == "01":
        image.LossyImageCompression = "01"
        if source.get("LossyImageCompressionMethod"):
            image.LossyImageCompressionMethod = source.LossyImageCompressionMethod


def write_objects(objects: dict[str, Dataset], folder: str | os.PathLike, stem: str) -> list[Path]:
    """``<folder>/<stem>_<kind>.dcm`` for each object (DICOM Part 10 files)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, ds in objects.items():
        path = Path(folder, f"{stem}_{kind}.dcm")
        ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths
