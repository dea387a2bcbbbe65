"""Fixtures for the MONAI Label app's tests: a tiny trained model, a private copy of the app and its studies,
MONAI Label's FastAPI app in-process (TestClient).

Real data only: ZhangLab normals to train the tiny model, the app's sample studies, ../shared/data/dicom.
A missing prerequisite fails the test; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
APP_SRC = REPO / "monailabel_app"
SHARED_DATA = REPO.parent / "shared" / "data"
ZHANGLAB = SHARED_DATA / "zhanglab"
DICOM = SHARED_DATA / "dicom"
VENV_BIN = Path(sys.executable).parent
if str(REPO) not in sys.path:  # unit tests import monailabel_app.lib.*
    sys.path.insert(0, str(REPO))

# One torch thread: on this project's 2-core machines, shared with other jobs, torch's thread barriers made
# two threads several times slower than one.
torch.set_num_threads(1)

TINY = {"size": 64, "steps": 20, "batch_size": 8, "n_images": 24}


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
    """The app without run-time folders, so tests never write into the repository's app folder."""
    shutil.copytree(
        APP_SRC,
        dest,
        ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__", "sample_studies", ".*"),
    )
    return dest


def copy_studies(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in require(APP_SRC / "sample_studies").iterdir():
        if f.suffix.lower() in (".jpeg", ".jpg", ".png", ".dcm"):
            shutil.copy(f, dest / f.name)
    return dest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real AnatPaste model, trained in seconds on 24 ZhangLab normals at 64 px."""
    from anatpaste.data import load_image_set
    from anatpaste.train import TrainConfig, train

    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    data = load_image_set(normals(TINY["n_images"]), TINY["size"], progress=False)
    config = TrainConfig(
        image_size=TINY["size"],
        steps=TINY["steps"],
        batch_size=TINY["batch_size"],
        eval_every=10,
        checkpoint_every=0,
    )
    train(config, data, out, device="cpu")
    return out


@pytest.fixture(scope="session")
def base_normals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder of ZhangLab normals standing in for the model's original training normals."""
    d = tmp_path_factory.mktemp("base_normals")
    for f in normals(10, split="test"):
        shutil.copy(f, d / f.name)
    return d


def make_client(tmp: Path, conf: dict[str, str]):
    """MONAI Label's FastAPI app in-process on private copies of the app and the sample studies."""
    from fastapi.testclient import TestClient
    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache

    app_dir = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    settings.MONAI_LABEL_APP_DIR = str(app_dir)
    settings.MONAI_LABEL_STUDIES = str(studies)
    settings.MONAI_LABEL_APP_CONF = conf
    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
    settings.MONAI_LABEL_SESSION_PATH = str(tmp / "sessions")
    clear_cache()
    import monailabel.app

    return TestClient(monailabel.app.app), app_dir, studies


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, base_normals: Path) -> Iterator[tuple]:
    """(client, app_dir, studies) for one test module; the app's model store lives in its copy."""
    tmp = tmp_path_factory.mktemp("ml")
    client, app_dir, studies = make_client(tmp, {"model_path": str(tiny_model), "base_normals": str(base_normals)})
    with client:
        yield client, app_dir, studies


@pytest.fixture
def env_with_venv() -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH (MONAI Label's launcher runs `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env
