"""Shared pytest fixtures: real Redis and PostgreSQL servers, and per-test database URLs.

The servers are private processes on 127.0.0.1, started once per session and always stopped at
the end of it. Tests never touch the network: the Hugging Face hub is forced offline.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
# On a CPU with VNNI or AMX the default engine is OpenVINO: conversions made by commands and workers
# that tests start with the defaults go to this session's own cache, never the user's.
if "VOLFEFE_ENGINE_CACHE" not in os.environ:
    import atexit
    import shutil as _shutil
    import tempfile as _tempfile

    os.environ["VOLFEFE_ENGINE_CACHE"] = _tempfile.mkdtemp(prefix="volfefe-test-engines-")
    atexit.register(_shutil.rmtree, os.environ["VOLFEFE_ENGINE_CACHE"], True)

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from services.redis_server import RedisServer
from tests.servers import PostgresServer

# Model and database-schema fixtures live in tests/fixtures_model.py (written separately); enable
# this line once that file exists:
pytest_plugins = ["tests.fixtures_model", "tests.fault_metrics"]

#: Fixture name behind each ``database_url`` parameter (param -> fixture name).
DATABASE_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: uses real servers or processes (redis-server, PostgreSQL)"
    )
    config.addinivalue_line(
        "markers", "faults: fault-injection suite (kills and restarts servers and workers)"
    )
    config.addinivalue_line("markers", "slow: takes over ~15 s (long outages); run alone with -m slow")


# -- servers (session) ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session (no persistence)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole session.

    Its folder is made with tempfile, not tmp_path_factory: as root the server runs as the
    ``postgres`` user, who cannot enter pytest's root-only (0700) temporary folders.
    """
    base = Path(tempfile.mkdtemp(prefix="volfefe-pg-"))
    base.chmod(0o755)
    server = PostgresServer(base / "data")
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


# -- per-test URLs --------------------------------------------------------------------------------


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session's Redis, emptied (FLUSHALL) before the test; restarted if a test stopped it."""
    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server.url


@pytest.fixture(params=["fakeredis", "redis-server"])
def fake_or_real_redis(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of fakeredis, then of the session's real redis-server: a test that must hold on both."""
    if request.param == "fakeredis":
        import fakeredis

        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this test (dropped afterwards)."""
    if not postgres_server.running:
        postgres_server.start()
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    # Tidy-up only (the whole cluster goes at session end): a failure here must not fail the test.
    with contextlib.suppress(psycopg.Error):
        postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a new SQLite file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL; returns that database's URL."""
    return str(request.getfixturevalue(DATABASE_URL_FIXTURES[request.param]))
