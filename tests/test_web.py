"""The web process for real: ``volfefe web`` as a process, on a free port, against a real redis-server.

Credentials on every route, no state change from another origin, loopback unless credentials are
set in the environment, generated credentials shown once and kept private, 503 while Redis is
down and 200 again when it is back (same process), and jobs read as JSON only.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from rq import Queue
from rq.exceptions import DeserializationError
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from config import DEFAULT_QUEUE_NAME
from services.dashboard import DEFAULT_BIND, DashboardRefused, check_exposure, is_loopback
from services.redis_connection import embedded_redis_url, stop_embedded_redis
from services.redis_server import RedisServer, free_port
from tests.processes import wait_for
from tests.web_process import VOLFEFE, Answer, WebProcess, basic_auth, web_environment
from web.credentials import Credentials
from web.same_origin import cross_site_reason, origin_of

pytestmark = pytest.mark.integration

USER = "operator"
PASSWORD = "correct horse battery staple"
AUTH = basic_auth(USER, PASSWORD)
EMPTY_FAILED = f"/rq/queue/{DEFAULT_QUEUE_NAME}/failed/empty"
RQ = str(Path(sys.executable).with_name("rq"))
JSON_SERIALIZER = "rq.serializers.JSONSerializer"


def one_line(answer: Answer) -> str:
    lines = answer.body.strip().splitlines()
    assert len(lines) == 1, answer.body
    return lines[0]


def add_failed_job(connection: redis.Redis, redis_url: str) -> str:
    """A job that fails for real in a burst ``rq worker`` and lands in the queue's failed registry."""
    queue = Queue(DEFAULT_QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("math.sqrt", -1)
    before = failed_count(connection)
    subprocess.run(
        [RQ, "worker", DEFAULT_QUEUE_NAME, "--burst", "-w", "rq.worker.SimpleWorker", "-S", JSON_SERIALIZER],
        env={**os.environ, "RQ_REDIS_URL": redis_url},
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert failed_count(connection) == before + 1
    return job.id


def failed_count(connection: redis.Redis) -> int:
    return FailedJobRegistry(DEFAULT_QUEUE_NAME, connection=connection).get_job_count(cleanup=False)


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def web(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """One web process for the module's request tests, on the session's Redis (emptied before each test)."""
    folder = tmp_path_factory.mktemp("web")
    env = web_environment(
        folder / "var", redis_server.url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD
    )
    with WebProcess(env, folder / "web.log") as process:
        yield process


# -- credentials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/rq/",
        "/rq/0/data/queues.json",
        "/rq/0/view/workers",
        "/rq/static/js/jquery-3.5.1.min.js",
        "/nope",
    ],
)
def test_every_route_asks_for_credentials(web: WebProcess, path: str) -> None:
    anonymous = web.get(path)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert web.get(path, basic_auth(USER, "wrong")).status == 401
    assert web.get(path, basic_auth("someone", PASSWORD)).status == 401

    expected = {"/": 302, "/nope": 404}.get(path, 200)
    assert web.get(path, AUTH).status == expected


def test_the_dashboard_answers_with_credentials(
    web: WebProcess, connection: redis.Redis, redis_url: str
) -> None:
    add_failed_job(connection, redis_url)
    page = web.get("/rq/", AUTH)
    assert page.status == 200 and "RQ dashboard" in page.body
    assert page.headers["X-Frame-Options"] == "DENY"  # no framing by another site (clickjacking)
    queues = json.loads(web.get("/rq/0/data/queues.json", AUTH).body)["queues"]
    assert [(q["name"], q["failed_job_registry_count"]) for q in queues] == [(DEFAULT_QUEUE_NAME, 1)]
    assert web.get("/", AUTH).headers["Location"].endswith("/rq/")


# -- state changes: same origin only ---------------------------------------------------------------


def test_cross_site_posts_are_refused_and_same_origin_posts_work(
    web: WebProcess, connection: redis.Redis, redis_url: str
) -> None:
    add_failed_job(connection, redis_url)
    foreign = [
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:" + str(web.port)},  # another host name is another origin
        {"Origin": f"https://127.0.0.1:{web.port}"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page.html"},
        {},  # neither Origin nor Referer
    ]
    for headers in foreign:
        refused = web.post(EMPTY_FAILED, {**AUTH, **headers})
        assert refused.status == 403, (headers, refused)
        assert one_line(refused) in {
            "cross-site request refused: its Origin is not this site",
            "cross-site request refused: its Referer is not this site",
            "a state-changing request needs an Origin or Referer header from this site",
        }
    # GET on rq-dashboard's requeue-all (it accepts GET) is held to the same rule.
    assert web.get(f"/rq/requeue/{DEFAULT_QUEUE_NAME}", AUTH).status == 403
    assert web.post(EMPTY_FAILED).status == 401  # and nothing without credentials, same origin or not
    assert failed_count(connection) == 1

    same_origin = web.post(EMPTY_FAILED, {**AUTH, "Origin": web.base})
    assert same_origin.status == 200 and json.loads(same_origin.body) == {"status": "OK"}
    assert failed_count(connection) == 0

    add_failed_job(connection, redis_url)
    by_referer = web.post(EMPTY_FAILED, {**AUTH, "Referer": f"{web.base}/rq/0/view/jobs"})
    assert by_referer.status == 200
    assert failed_count(connection) == 0
    assert web.running


@pytest.mark.parametrize(
    ("origin", "referer", "refused"),
    [
        ("http://127.0.0.1:9181", None, False),
        ("HTTP://127.0.0.1:9181", None, False),
        ("http://127.0.0.1:9181", "http://evil.example/", False),  # Origin wins when both are sent
        ("http://evil.example", "http://127.0.0.1:9181/rq/", True),
        (None, "http://127.0.0.1:9181/rq/0/view/jobs", False),
        (None, "http://127.0.0.1:9181.evil.example/", True),
        (None, "http://127.0.0.1/", True),
        (None, "", True),
        ("null", None, True),
        ("http://[::1", None, True),
    ],
)
def test_cross_site_reason(origin: str | None, referer: str | None, refused: bool) -> None:
    assert (cross_site_reason("http://127.0.0.1:9181/", origin, referer) is not None) is refused


def test_origin_of_fills_in_default_ports() -> None:
    assert origin_of("http://example.com/x") == origin_of("http://EXAMPLE.com:80")
    assert origin_of("https://example.com") == ("https", "example.com", 443)
    assert origin_of("example.com") is None


# -- where it listens -------------------------------------------------------------------------------


def listening_addresses(pid: int, port: int) -> list[str]:
    return [
        connection.laddr.ip
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    ]


def test_it_binds_loopback_by_default(web: WebProcess) -> None:
    assert DEFAULT_BIND == "127.0.0.1"
    assert listening_addresses(web.pid, web.port) == ["127.0.0.1"]


def test_it_listens_on_port_when_set(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = web_environment(
        tmp_path / "var",
        redis_url,
        PORT=str(port),
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
    )
    with WebProcess(env, tmp_path / "web.log", port=port, args=[]) as process:
        assert process.get("/rq/", AUTH).status == 200


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_binds_need_no_credentials_in_the_environment(bind: str) -> None:
    assert is_loopback(bind)
    check_exposure(bind, credentials_in_environment=False)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.168.1.20", "dashboard.example.com"])
def test_exposed_binds_need_credentials_in_the_environment(bind: str) -> None:
    with pytest.raises(DashboardRefused, match="RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD"):
        check_exposure(bind, credentials_in_environment=False)
    check_exposure(bind, credentials_in_environment=True)


@pytest.mark.parametrize("command", ["web", "dashboard"])
def test_an_exposed_bind_with_only_generated_credentials_is_refused(
    redis_url: str, tmp_path: Path, command: str
) -> None:
    env = web_environment(tmp_path / "var", redis_url)
    with WebProcess(env, tmp_path / "first.log"):  # generates and keeps credentials
        pass
    refused = subprocess.run(
        [VOLFEFE, command, "--bind", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "volfefe: error: refusing to serve the dashboard on 0.0.0.0 without credentials: set "
        "RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD, or bind 127.0.0.1"
    ]


def test_an_exposed_bind_with_credentials_in_the_environment_serves(redis_url: str, tmp_path: Path) -> None:
    env = web_environment(
        tmp_path / "var", redis_url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD
    )
    port = free_port()
    with WebProcess(
        env, tmp_path / "web.log", port=port, args=["--bind", "0.0.0.0", "--port", str(port)]
    ) as process:
        assert listening_addresses(process.pid, port) == ["0.0.0.0"]
        assert process.get("/rq/").status == 401
        assert process.get("/rq/", AUTH).status == 200


@pytest.mark.parametrize("half", [{"RQ_DASHBOARD_USERNAME": USER}, {"RQ_DASHBOARD_PASSWORD": PASSWORD}])
def test_half_set_credentials_are_refused_in_one_line(
    redis_url: str, tmp_path: Path, half: dict[str, str]
) -> None:
    env = web_environment(tmp_path / "var", redis_url, **half)
    result = subprocess.run(
        [VOLFEFE, "web", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("volfefe: error: RQ_DASHBOARD_") and "is not set: set both" in line
    assert PASSWORD not in result.stderr


def test_a_port_in_use_is_refused_in_one_line(redis_url: str, tmp_path: Path) -> None:
    env = web_environment(
        tmp_path / "var", redis_url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [VOLFEFE, "web", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"volfefe: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_url_that_is_not_redis_is_refused_in_one_line(tmp_path: Path) -> None:
    env = web_environment(
        tmp_path / "var",
        "http://user:s3cret@example.com/",
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
    )
    result = subprocess.run(
        [VOLFEFE, "web", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("volfefe: error: cannot use the Redis URL http://user:***@example.com/: ")
    assert "s3cret" not in result.stderr


# -- generated credentials --------------------------------------------------------------------------


def test_generated_credentials_are_shown_once_and_kept_private(redis_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = web_environment(data_dir, redis_url)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with WebProcess(env, first_log) as first:
        kept = json.loads((data_dir / "web" / "credentials").read_text())
        assert kept["username"] == "volfefe" and len(kept["password"]) >= 32
        assert first.get("/rq/").status == 401
        assert first.get("/rq/", basic_auth(kept["username"], kept["password"])).status == 200
    assert stat.S_IMODE((data_dir / "web" / "credentials").stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "web").stat().st_mode) == 0o700
    shown = [line for line in first_log.read_text().splitlines() if kept["password"] in line]
    assert len(shown) == 1 and shown[0].startswith("volfefe web: generated credentials: user 'volfefe'")

    with WebProcess(env, second_log) as second:
        assert second.get("/rq/", basic_auth(kept["username"], kept["password"])).status == 200
    assert kept["password"] not in second_log.read_text()
    assert json.loads((data_dir / "web" / "credentials").read_text()) == kept


def test_a_credentials_file_others_can_read_is_refused(redis_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = web_environment(data_dir, redis_url)
    with WebProcess(env, tmp_path / "first.log"):
        pass
    (data_dir / "web" / "credentials").chmod(0o644)
    result = subprocess.run(
        [VOLFEFE, "web", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "may have been read by others" in line and "delete it to generate new credentials" in line


def test_credentials_never_show_in_repr() -> None:
    assert PASSWORD not in repr(Credentials(USER, PASSWORD))


# -- Redis outages ----------------------------------------------------------------------------------


def test_it_answers_503_while_redis_is_down_and_200_when_it_is_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    env = web_environment(
        tmp_path / "var", server.url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD
    )
    try:
        with WebProcess(env, tmp_path / "web.log") as web:
            pid = web.pid
            assert web.get("/rq/0/data/queues.json", AUTH).status == 200
            for _outage in range(2):
                server.stop()
                for path in ("/rq/", "/rq/0/data/queues.json", "/rq/0/data/workers.json"):
                    down = web.get(path, AUTH)
                    assert down.status == 503, down
                    assert one_line(down).startswith(
                        f"Redis is unavailable at redis://127.0.0.1:{server.port}/0: "
                    )
                    assert down.headers["Retry-After"]
                assert web.post(EMPTY_FAILED, {**AUTH, "Origin": web.base}).status == 503
                assert web.get("/rq/").status == 401  # credentials are still checked first
                time.sleep(2)
                assert web.running and web.pid == pid
                server.start()
                assert web.get("/rq/0/data/queues.json", AUTH).status == 200
                assert web.get("/rq/", AUTH).status == 200
            assert web.running and web.pid == pid
            assert web.stop() == 0  # SIGTERM: a clean exit
        log = web.log()
        assert log.count("Redis is unavailable at") == 2, log  # once per outage, not per request
        assert log.count("Redis is back at") == 2, log
        assert "Traceback" not in log
    finally:
        server.stop()


def test_it_starts_while_redis_is_down_and_serves_once_it_is_up(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.port = free_port()
    env = web_environment(
        tmp_path / "var", server.url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD
    )
    try:
        with WebProcess(env, tmp_path / "web.log") as web:
            assert web.get("/rq/", AUTH).status == 503
            server.start()
            assert web.get("/rq/", AUTH).status == 200
    finally:
        server.stop()


def test_it_serves_on_the_embedded_redis_socket(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = web_environment(data_dir, None, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD)
    try:
        with WebProcess(env, tmp_path / "web.log") as web:
            socket_url = (data_dir / "redis" / "url").read_text()
            assert socket_url.startswith("unix://")
            page = web.get("/rq/", AUTH)
            assert page.status == 200 and socket_url in page.body
            assert web.get("/rq/0/data/queues.json", AUTH).status == 200
            assert stop_embedded_redis(data_dir)
            assert web.get("/rq/0/data/queues.json", AUTH).status == 503
            assert embedded_redis_url(data_dir) == socket_url  # started again, same socket
            assert web.get("/rq/0/data/queues.json", AUTH).status == 200
    finally:
        stop_embedded_redis(data_dir)


# -- jobs are read as JSON only ---------------------------------------------------------------------


class TouchMarker:
    """A pickle payload: unpickling it creates the marker file (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_the_dashboard_reads_jobs_as_json_and_never_unpickles(
    web: WebProcess, redis_url: str, connection: redis.Redis, tmp_path: Path
) -> None:
    queue_name = "web-json-test"
    job = Queue(queue_name, connection=connection, serializer=JSONSerializer).enqueue("time.sleep", 60)
    env = {**os.environ, "RQ_REDIS_URL": redis_url}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [RQ, "worker", queue_name, "-w", "rq.worker.SimpleWorker", "-S", JSON_SERIALIZER],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:

        def current_jobs() -> list[object]:
            answer = web.get("/rq/0/data/workers.json", AUTH)
            assert answer.status == 200, answer
            return [w["current_job"] for w in json.loads(answer.body)["workers"]]

        wait_for(lambda: any(job != "idle" for job in current_jobs()), 60, what="the worker to start the job")
        (running,) = [job for job in current_jobs() if job != "idle"]
        assert running["job_id"] == job.id and running["call_string"] == "time.sleep(60)"

        marker = tmp_path / "pickle-ran"
        connection.hset(job.key, "data", zlib.compress(pickle.dumps(TouchMarker(marker))))
        refused = web.get("/rq/0/data/workers.json", AUTH)
        assert refused.status == 500
        assert one_line(refused) == "a job in Redis holds data that is not JSON: not read"
        assert not marker.exists()
        assert web.running

        # The attack is real: RQ's own default (pickle) runs the payload when it reads the job.
        with pytest.raises(DeserializationError):
            for listed in Worker.all(connection=connection):
                current = listed.get_current_job()
                if current is not None:
                    current.get_call_string()
        assert marker.exists()
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
