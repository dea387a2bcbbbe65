"""Fixtures of the MONAI Label app's tests (``tiny_model`` comes from tests/conftest.py).

Real data only: ZhangLab normals, the app's sample studies, ../shared/data/dicom. A missing prerequisite
fails the test; nothing is skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from server_env import make_client, normals

# One torch thread: on this project's 2-core machines, shared with other jobs, torch's thread barriers made
# two threads several times slower than one.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def base_normals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder of ZhangLab normals standing in for the model's original training normals."""
    d = tmp_path_factory.mktemp("base_normals")
    for f in normals(10, split="test"):
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, base_normals: Path) -> Iterator[tuple]:
    """(client, app_dir, studies) for one test module; the app's model store lives in its copy."""
    tmp = tmp_path_factory.mktemp("ml")
    client, app_dir, studies = make_client(tmp, {"model_path": str(tiny_model), "base_normals": str(base_normals)})
    with client:
        yield client, app_dir, studies
