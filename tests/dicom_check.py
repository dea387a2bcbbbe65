"""dciodvfy (Debian's dicom3tools, installed by .ci/run) on a written DICOM object: its error lines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for ``path``; a missing dciodvfy fails the test (never a skip)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy not found: install the Debian package dicom3tools (.ci/run does)")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    assert any(line.strip() in ("ComprehensiveSR", "Segmentation", "SCImage") for line in lines), lines[:20]
    return [line for line in lines if "Error" in line]
