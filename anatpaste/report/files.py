"""``anatpaste score INPUT --dicom-out DIR``: the report objects of one scored input, as DICOM files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from anatpaste.report.build import KINDS, build_objects, write_objects
from anatpaste.report.finding import Finding


def is_dicom(path: str | os.PathLike) -> bool:
    """A Part 10 file ("DICM" after the 128-byte preamble); PNG/JPEG inputs get no DICOM objects."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def write_for_input(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    result: Any,
    flags: list[str],
    fixed: list[str],
    display: np.ndarray,
    heat_display_max: float,
) -> list[Path]:
    """SR, lung SEG and heatmap capture of ``result`` (a ScoreResult with maps) as ``<stem>_<kind>.dcm``."""
    if not is_dicom(path):
        return []
    finding = Finding.of(result, flags, fixed, display, heat_display_max)
    return write_objects(build_objects(pydicom.dcmread(path), finding, KINDS), out_dir, Path(path).stem)
