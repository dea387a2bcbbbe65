"""Paths and small helpers shared by the extension's tests (a uniquely named module: several test folders
of this repository have a conftest.py, so tests do not import from ``conftest``)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "slicer_extension"
MODULE_DIR = EXTENSION / "AnatPasteReview"
LIB_DIR = MODULE_DIR / "AnatPasteReviewLib"
TOOLS_DIR = EXTENSION / "tools"
SAMPLE_STUDIES = REPO / "monailabel_app" / "sample_studies"

# The module folder is what Slicer puts on sys.path for a scripted module: the Lib imports as Slicer sees it.
for path in (MODULE_DIR, TOOLS_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
