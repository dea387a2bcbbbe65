"""A real ``monailabel start_server`` for the live tests: start on a free loopback port, wait, stop by PID."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from server_env import VENV_BIN, require

from monailabel_app.launch import free_port, server_command, server_env, stop_process

START_TIMEOUT = 240.0


class LiveServer:
    """``monailabel start_server --app APP --studies STUDIES --conf ... --host 127.0.0.1 --port N``."""

    def __init__(self, app: Path, studies: str, conf: dict[str, str], tmp: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "server.log"
        self.tmpdir = tmp / "server-tmp"
        self.tmpdir.mkdir()
        require(VENV_BIN / "monailabel")
        cmd = server_command(studies, port=self.port, app=app, conf=conf)
        full_env = server_env(TMPDIR=str(self.tmpdir), MONAI_LABEL_SESSION_PATH=str(tmp / "sessions"), **(env or {}))
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)
        self.client = httpx.Client(base_url=self.url, timeout=120.0)

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.client.get("/info/", headers=headers or {}).status_code in (200, 401, 403):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        pytest.fail(f"server did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server by its PID (and what it started, e.g. a scoring subprocess still running)."""
        self.client.close()
        stop_process(self.proc)
        self._log.close()


def wait_for(predicate, timeout: float, what: str, server: LiveServer, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail with the server's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if server.proc.poll() is not None:
            pytest.fail(f"server exited while waiting for {what}:\n{server.log_tail()}")
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{server.log_tail()}")
