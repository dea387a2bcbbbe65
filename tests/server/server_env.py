"""Paths and helpers of the server tests: the repo's app, the real data beside the repo, private copies."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP_SRC = REPO / "monailabel_app"
SHARED_DATA = REPO.parent / "shared" / "data"
ZHANGLAB = SHARED_DATA / "zhanglab"
DICOM = SHARED_DATA / "dicom"
VENV_BIN = Path(sys.executable).parent


def require(path: Path) -> Path:
    """A prerequisite of the tests: its absence is a failure, not a skip."""
    if not path.exists():
        pytest.fail(f"test prerequisite missing: {path}")
    return path


def normals(n: int, split: str = "train") -> list[Path]:
    files = sorted(require(ZHANGLAB / split / "NORMAL").glob("*.jpeg"))[:n]
    if len(files) < n:
        pytest.fail(f"need {n} ZhangLab normals in {ZHANGLAB / split / 'NORMAL'}, found {len(files)}")
    return files


def copy_app(dest: Path) -> Path:
    """The app without run-time folders, so tests never write into the repository's app folder; without
    ``lib`` too: ``main.py`` imports it by its one name, ``monailabel_app.lib``, never from beside itself."""
    shutil.copytree(
        APP_SRC,
        dest,
        ignore=shutil.ignore_patterns("model", "logs", "bin", "lib", "__pycache__", "sample_studies", ".*"),
    )
    return dest


def copy_studies(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in require(APP_SRC / "sample_studies").iterdir():
        if f.suffix.lower() in (".jpeg", ".jpg", ".png", ".dcm"):
            shutil.copy(f, dest / f.name)
    return dest


def make_client(tmp: Path, conf: dict[str, str], studies_url: str | None = None):
    """MONAI Label's FastAPI app in-process on private copies of the app and the sample studies (or on the
    DICOMweb archive at ``studies_url``)."""
    from fastapi.testclient import TestClient
    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache

    app_dir = copy_app(tmp / "app")
    studies = studies_url or copy_studies(tmp / "studies")
    settings.MONAI_LABEL_APP_DIR = str(app_dir)
    settings.MONAI_LABEL_STUDIES = str(studies)
    settings.MONAI_LABEL_APP_CONF = conf
    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
    settings.MONAI_LABEL_SESSION_PATH = str(tmp / "sessions")
    clear_cache()
    import monailabel.app

    return TestClient(monailabel.app.app), app_dir, studies
