"""Fixtures for the 3D Slicer extension's tests (run outside Slicer, with slicer-core for MRML).

- ``fake``: a local HTTP server speaking docs/server-api.md, misbehaving on request (fake_server.py).
- ``real_server``: the project's MONAI Label app (``monailabel start_server``) on a free 127.0.0.1 port,
  on a temporary copy of ``monailabel_app/sample_studies`` and a temporary model store; killed by its
  process-group id at the end.
- ``mrml``: a fresh MRML scene (slicer-core), also set as ``slicer.mrmlScene``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "slicer_extension"
MODULE_DIR = EXTENSION / "AnatPasteReview"
LIB_DIR = MODULE_DIR / "AnatPasteReviewLib"
SAMPLE_STUDIES = REPO / "monailabel_app" / "sample_studies"
VENV_BIN = Path(sys.executable).parent

# The module folder is what Slicer puts on sys.path for a scripted module: the Lib imports as Slicer sees it.
sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake():
    from fake_server import FakeServer

    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refused_url() -> str:
    """An address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_url():
    """A server whose accept queue is full: TCP connects hang until the client's connect timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(2):  # Linux accepts backlog + 1 pending connections; fill them
        c = socket.socket()
        c.settimeout(0.3)
        with contextlib.suppress(OSError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for c in fillers:
            c.close()
        listener.close()


@pytest.fixture
def mrml():
    import slicer

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    try:
        yield scene
    finally:
        scene.Clear(1)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory):
    """The project's MONAI Label server on 127.0.0.1 (a missing app or model is a test failure)."""
    main = REPO / "monailabel_app" / "main.py"
    assert main.is_file(), f"{main} is missing: the server app is a prerequisite of these tests"
    work = tmp_path_factory.mktemp("anatpaste_server")
    studies = work / "studies"
    shutil.copytree(SAMPLE_STUDIES, studies)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed in finally
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        str(VENV_BIN / "monailabel"),
        "start_server",
        "--app",
        str(REPO / "monailabel_app"),
        "--studies",
        str(studies),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--conf",
        "model_dir",
        str(work / "model"),
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        info = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{_tail(work / 'server.log')}"
            try:
                with urllib.request.urlopen(f"{url}/info/", timeout=2) as resp:
                    info = json.load(resp)
                break
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.5)
        assert info is not None, f"server did not answer /info/ within 180 s:\n{_tail(work / 'server.log')}"
        assert "anatpaste" in info.get("models", {}), (
            "the server has no 'anatpaste' model (the shipped anatpaste/models/default.pt seeds it):\n"
            f"{json.dumps(info)[:800]}\n{_tail(work / 'server.log')}"
        )
        yield {"url": url, "studies": studies, "work": work, "log": work / "server.log"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the launcher, the server and any training subprocess
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
