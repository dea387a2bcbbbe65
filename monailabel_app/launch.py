"""Start and stop this app's MONAI Label server as a subprocess: one place for the command line, the PATH
quirk and the shutdown, shared by the tests and the latency benchmark.

    proc = subprocess.Popen(server_command(studies, port=8000), env=server_env())
    ...
    stop_process(proc)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

APP_DIR = Path(__file__).resolve().parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(
    studies: str | os.PathLike,
    *,
    port: int,
    host: str = "127.0.0.1",
    conf: Mapping[str, object] | None = None,
    app: str | os.PathLike = APP_DIR,
    bin_dir: str | os.PathLike | None = None,
) -> list[str]:
    """``monailabel start_server --app APP --studies STUDIES [--conf K V]... --host HOST --port PORT``.

    ``studies`` is a folder or a DICOMweb URL; ``bin_dir`` holds the ``monailabel`` launcher (default: beside
    the running Python, i.e. this virtual environment).
    """
    launcher = Path(bin_dir or Path(sys.executable).parent) / "monailabel"
    cmd = [str(launcher), "start_server", "--app", str(app), "--studies", str(studies)]
    for key, value in (conf or {}).items():
        cmd += ["--conf", key, str(value)]
    return cmd + ["--host", host, "--port", str(port)]


def server_env(bin_dir: str | os.PathLike | None = None, **extra: str) -> dict[str, str]:
    """This process's environment with ``bin_dir`` first on PATH: monailabel's launcher script runs a bare
    ``python``, which must be the virtual environment's, not the system's. ``extra`` adds variables."""
    bin_path = str(bin_dir or Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_path}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s; then kill what it started and left running (MONAI Label
    runs trainings and scorings in subprocesses of its own)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
