"""Test helper: a real ``volfefe web`` process on a free port, and plain HTTP requests to it."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from services.redis_server import free_port
from tests.processes import wait_for

VOLFEFE = str(Path(sys.executable).with_name("volfefe"))
#: seconds the web process may take to import Flask and rq-dashboard and listen.
START_TIMEOUT = 60.0
#: seconds one request may take.
REQUEST_TIMEOUT = 15.0


@dataclass
class Answer:
    status: int
    body: str
    headers: Message = field(repr=False)


def basic_auth(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request (no redirects followed); the status, body and headers whatever the status."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    data = b"" if method in {"POST", "PUT", "PATCH", "DELETE"} else None
    prepared = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(prepared, timeout=REQUEST_TIMEOUT) as response:
            return Answer(response.status, response.read().decode(errors="replace"), response.headers)
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode(errors="replace"), error.headers)


def web_environment(data_dir: Path, redis_url: str | None, **extra: str) -> dict[str, str]:
    """This environment without any RQ_DASHBOARD_* or PORT, plus the given Redis, data dir and ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RQ_DASHBOARD_") and key not in {"PORT", "REDIS_URL"}
    }
    env.update(VOLFEFE_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **extra)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


class WebProcess:
    """``volfefe web`` (or the ``dashboard`` alias) as a real process, its output in ``log_path``."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        args: list[str] | None = None,
        command: str = "web",
    ) -> None:
        self.port = port or free_port()
        self.env = env
        self.log_path = log_path
        self.command = [VOLFEFE, command, *(args if args is not None else ["--port", str(self.port)])]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> WebProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def listening() -> bool:
            if not self.running:
                return True
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, START_TIMEOUT, what=f"volfefe web to listen on {self.port}")
        if not self.running:
            raise AssertionError(f"volfefe web exited while starting:\n{self.log()[-3000:]}")
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.process is None:
            return None
        if self.running:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return request(self.base + path, "GET", headers)

    def post(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return request(self.base + path, "POST", headers)

    def __enter__(self) -> WebProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
