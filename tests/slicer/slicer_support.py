"""Paths and small helpers shared by the extension's tests (a uniquely named module: several test folders
of this repository have a conftest.py, so tests do not import from ``conftest``)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "slicer_extension"
MODULE_DIR = EXTENSION / "AnatPasteReview"
LIB_DIR = MODULE_DIR / "AnatPasteReviewLib"
TOOLS_DIR = EXTENSION / "tools"
SAMPLE_STUDIES = REPO / "monailabel_app" / "sample_studies"
VENV_BIN = Path(sys.executable).parent

# The module folder is what Slicer puts on sys.path for a scripted module: the Lib imports as Slicer sees it.
for path in (MODULE_DIR, TOOLS_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
