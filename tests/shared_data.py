"""Where the real radiographs are: ../shared/data beside the repository (CI lays it there too)."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ZHANG = SHARED_DATA / "zhanglab"


def zhang_files(*parts: str, n: int | None = None) -> list[Path]:
    """Sorted ZhangLab files of a folder; fails (never skips) when the data is missing."""
    files = sorted((ZHANG.joinpath(*parts)).glob("*.jpeg"))
    assert files, f"expected ZhangLab images under {ZHANG.joinpath(*parts)} (CI provides ../shared/data)"
    return files[:n] if n else files
