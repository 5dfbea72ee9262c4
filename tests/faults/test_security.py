"""Scenario 7: security defaults. The dashboard never listens beyond localhost without credentials, and
the project's own redis-server listens on the loopback interface only, in protected mode.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import redis

from services.redis_server import RedisServer, free_port
from tests.processes import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

VOLFEFE = str(Path(sys.executable).with_name("volfefe"))
EXPOSED_BINDS = ["0.0.0.0", "::", "dashboard.example.com"]


def environment(redis_url: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RQ_DASHBOARD_")}
    return {**env, "REDIS_URL": redis_url, **extra}


@pytest.mark.parametrize("bind", EXPOSED_BINDS)
@pytest.mark.parametrize("credentials", [{}, {"RQ_DASHBOARD_USERNAME": "admin"}], ids=["none", "no-password"])
def test_dashboard_refuses_an_exposed_bind_without_credentials(
    redis_url: str, bind: str, credentials: dict[str, str]
) -> None:
    process = subprocess.run(
        [VOLFEFE, "dashboard", "--bind", bind, "--port", str(free_port())],
        env=environment(redis_url, **credentials),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 1, process
    assert "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines() == [
        f"volfefe: error: refusing to serve the dashboard on {bind} without credentials: set "
        "RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD, or bind 127.0.0.1"
    ]


def test_dashboard_default_listens_on_loopback_only(redis_url: str, tmp_path: Path, record_metrics) -> None:
    """Loopback only, and (since the web process) credentials on every route, even there."""
    port = free_port()
    process = subprocess.Popen(
        [VOLFEFE, "dashboard", "--port", str(port)],
        env=environment(
            redis_url,
            RQ_DASHBOARD_USERNAME="admin",
            RQ_DASHBOARD_PASSWORD="s3cret",
            VOLFEFE_DATA_DIR=str(tmp_path / "var"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def listening() -> list[str]:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            return [
                connection.laddr.ip
                for member in tree
                for connection in member.net_connections(kind="inet")
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
            ]

        wait_for(lambda: bool(listening()), 60, what="the dashboard to listen")
        addresses = listening()
        page = f"http://127.0.0.1:{port}/rq/"
        with pytest.raises(urllib.error.HTTPError) as unauthorised:
            urllib.request.urlopen(page, timeout=10)
        token = base64.b64encode(b"admin:s3cret").decode()
        request = urllib.request.Request(page, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    record_metrics("7 security", dashboard_listens_on=addresses, refused_binds=EXPOSED_BINDS)
    assert addresses == ["127.0.0.1"]
    assert unauthorised.value.code == 401
    assert status == 200


def test_project_redis_server_is_loopback_only_in_protected_mode(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("protected-mode")["protected-mode"] == "yes"
    finally:
        client.close()
