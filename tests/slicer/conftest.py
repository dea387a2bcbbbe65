"""Fixtures for the 3D Slicer extension's tests (run outside Slicer, with slicer-core for MRML).

- ``fake``: a local HTTP server speaking docs/server-api.md, misbehaving on request (slicer_fake_server.py).
- ``real_server``: the project's MONAI Label app (``monailabel start_server``) on a free 127.0.0.1 port,
  on a temporary copy of ``monailabel_app/sample_studies`` and a temporary model store seeded with the
  session's tiny trained model (``tiny_model``, tests/conftest.py); killed by its process-group id.
- ``mrml``: a fresh MRML scene (slicer-core), also set as ``slicer.mrmlScene``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time

import pytest
from slicer_support import REPO, SAMPLE_STUDIES, tail

from monailabel_app.launch import free_port, server_command, server_env, stop_process


@pytest.fixture
def fake():
    from slicer_fake_server import FakeServer

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
def real_server(tmp_path_factory, tiny_model):
    """The project's MONAI Label server on 127.0.0.1 (a missing app or model is a test failure)."""
    main = REPO / "monailabel_app" / "main.py"
    assert main.is_file(), f"{main} is missing: the server app is a prerequisite of these tests"
    work = tmp_path_factory.mktemp("anatpaste_server")
    studies = work / "studies"
    shutil.copytree(SAMPLE_STUDIES, studies)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = server_command(studies, port=port, conf={"model_dir": work / "model", "model_path": tiny_model})
    # TMPDIR: MONAI Label's upload and result files stay in the test's folder.
    env = server_env(TMPDIR=str(work / "tmp"), MONAI_LABEL_SESSION_PATH=str(work / "sessions"))
    (work / "tmp").mkdir()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Readiness through the extension's own client (no second client in the tests).
        from AnatPasteReviewLib.client import AnatPasteClient, ServerError, Timeouts

        client = AnatPasteClient(url, timeouts=Timeouts(connect=1.0, read=5.0, total=10.0))
        deadline = time.monotonic() + 180
        info = None
        while info is None and time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{tail(work / 'server.log')}"
            try:
                info = client.info()
            except ServerError:
                time.sleep(0.5)
        assert info is not None, f"server did not answer /info/ within 180 s:\n{tail(work / 'server.log')}"
        assert info.model_available, (
            f"the server has no 'anatpaste' model (seeded with --conf model_path): {info}\n{tail(work / 'server.log')}"
        )
        yield {"url": url, "studies": studies, "work": work, "log": work / "server.log"}
    finally:
        stop_process(proc)  # the launcher, the server and any training subprocess
        log.close()
