"""Every connection has a bound (issue 19): the settings, the clients built from them, and what each
bound does against a real server behind a black-holed route (tests/faults/blackhole.py).

The black-hole checks use short bounds (a second or two), so that a missing bound shows as a call that
never ends (the test then hangs instead of passing), and a present one as the error it raises.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import StopRequested
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from config import ConfigError, load_settings
from db.bounds import ANSWER_GRACE
from db.session import bounded_engine, migration_engine
from services.redis_client import BoundedRedis, bound_connection, redis_client
from services.redis_connection import client_for, safe_url
from services.redis_memory import eviction_problem, out_of_memory
from services.redis_server import RedisServer
from tests.faults.blackhole import BlackHoleProxy
from tests.faults.network_support import database_through, redis_through
from tests.servers import PostgresServer
from workers.outage import PatientRetry

DEFAULTS = load_settings({})
#: bounds short enough for a test: a black-holed call ends within a few seconds.
SHORT = dataclasses.replace(
    DEFAULTS, redis_socket_timeout=1.5, redis_connect_timeout=1.0, database_statement_timeout=1.0
)


# -- settings -------------------------------------------------------------------------------------------


def test_the_bounds_have_documented_defaults_and_are_read() -> None:
    assert (DEFAULTS.redis_connect_timeout, DEFAULTS.redis_socket_timeout) == (5.0, 15.0)
    assert (DEFAULTS.database_connect_timeout, DEFAULTS.database_statement_timeout) == (5, 15.0)
    assert DEFAULTS.database_lock_timeout == 10.0 and DEFAULTS.stop_grace == 10.0
    read = load_settings({"REDIS_SOCKET_TIMEOUT": "30", "TCP_KEEPALIVE_COUNT": "5", "STOP_GRACE": "2.5"})
    assert (read.redis_socket_timeout, read.tcp_keepalive_count, read.stop_grace) == (30.0, 5, 2.5)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("REDIS_SOCKET_TIMEOUT", "5", "at least 6 seconds"),  # the blocking dequeue needs room below it
        ("REDIS_CONNECT_TIMEOUT", "0", "more than 0"),
        ("DATABASE_CONNECT_TIMEOUT", "1", "at least 2"),
        ("DATABASE_STATEMENT_TIMEOUT", "soon", "not a number"),
        ("TCP_KEEPALIVE_IDLE", "-1", "at least 1"),
    ],
)
def test_a_bad_bound_is_refused_in_one_line_naming_it(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({name: value})
    assert str(raised.value).startswith(f"{name}=") and says in str(raised.value)


# -- Redis clients --------------------------------------------------------------------------------------


def test_redis_clients_get_every_bound_over_tcp_and_the_url_wins() -> None:
    tcp = redis_client("redis://127.0.0.1:6390/0", DEFAULTS).connection_pool.connection_kwargs
    assert (tcp["socket_timeout"], tcp["socket_connect_timeout"], tcp["health_check_interval"]) == (
        15.0,
        5.0,
        10,
    )
    assert tcp["socket_keepalive"] is True
    assert tcp["socket_keepalive_options"] == {
        socket.TCP_KEEPIDLE: 10,
        socket.TCP_KEEPINTVL: 5,
        socket.TCP_KEEPCNT: 3,
    }
    unix = redis_client("unix:///tmp/none.sock?db=0", DEFAULTS).connection_pool.connection_kwargs
    assert unix["socket_timeout"] == 15.0 and "socket_keepalive" not in unix  # no TCP on a Unix socket
    given = redis_client("redis://h:1/0?socket_timeout=3", DEFAULTS, socket_timeout=4)
    assert given.connection_pool.connection_kwargs["socket_timeout"] == 3.0


def test_a_sentinel_url_gives_a_bounded_client_of_the_named_primary() -> None:
    url = "redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/mymaster/2?socket_timeout=4"
    client = redis_client(url, DEFAULTS)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool) and pool.is_master
    assert pool.service_name == "mymaster"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "s3cret")
    assert pool.connection_kwargs["socket_timeout"] == 4.0 and pool.connection_kwargs["socket_keepalive"]
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    assert all(s.connection_pool.connection_kwargs["socket_timeout"] == 15.0 for s in sentinels)
    assert "s3cret" not in safe_url(url)
    assert BoundedRedis.from_url(url).connection_pool.service_name == "mymaster"  # rq's --connection-class


def test_a_sentinel_url_without_its_primary_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.redis_connection import RedisUnavailable

    with pytest.raises(RedisUnavailable) as raised:
        client_for("redis+sentinel://127.0.0.1:26379")
    assert "names its primary" in str(raised.value) and "\n" not in str(raised.value)


def test_a_client_rq_built_gets_the_bounds(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)  # what `rq worker --url` makes: waits without a limit
    connection.ping()
    bound_connection(connection, DEFAULTS)
    assert connection.connection_pool.connection_kwargs["socket_timeout"] == 15.0
    assert connection.ping() and connection.connection_pool.get_connection().socket_timeout == 15.0


@pytest.fixture
def proxied_redis(redis_server: RedisServer, redis_url: str):
    with BlackHoleProxy(("127.0.0.1", int(redis_server.port or 0))) as proxy:
        yield proxy


def test_a_black_holed_redis_fails_within_the_socket_timeout_and_works_when_healed(proxied_redis) -> None:
    client = redis_client(
        redis_through(proxied_redis), SHORT, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    )
    assert client.ping()
    proxied_redis.pause()
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        client.ping()
    assert time.monotonic() - started < SHORT.redis_socket_timeout + 1
    with pytest.raises((RedisTimeoutError, RedisConnectionError)):  # a new connection gets no answer either
        redis_client(
            redis_through(proxied_redis), SHORT, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)
        ).ping()
    proxied_redis.heal()
    assert client.ping()


# -- riding out, and stopping (PatientRetry) ----------------------------------------------------------


def _failing(times: int, error: Exception):
    left = [times]

    def call() -> str:
        if left[0]:
            left[0] -= 1
            raise error
        return "OK"

    return call


def test_patient_retry_waits_out_a_full_redis(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr("redis.retry.sleep", lambda _seconds: None)
    retry = PatientRetry(lambda: "w1")
    oom = OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
    assert retry.call_with_retry(_failing(50, oom), lambda _error: None) == "OK"
    assert any("out of memory" in record.getMessage() for record in caplog.records)


def test_patient_retry_waits_out_a_script_refused_for_memory(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from redis._parsers.base import BaseParser

    monkeypatch.setattr("redis.retry.sleep", lambda _seconds: None)
    retry = PatientRetry(lambda: "w1")
    refused = BaseParser.parse_error(
        "@user_script:15: @user_script: 15: -OOM command not allowed when used memory > 'maxmemory'."
    )
    assert type(refused) is redis.exceptions.ResponseError  # what redis-py raises for a script's refusal
    assert retry.call_with_retry(_failing(5, refused), lambda _error: None) == "OK"
    said = [record.getMessage() for record in caplog.records if record.name == "rq.worker"]
    assert any("out of memory (OOM command not allowed" in message for message in said), said
    assert any("Redis is back" in message for message in said), said
    other = redis.exceptions.ResponseError("ERR wrong number of arguments for 'set' command")
    with pytest.raises(redis.exceptions.ResponseError):  # any other error reply is the caller's
        retry.call_with_retry(_failing(1, other), lambda _error: None)


def test_patient_retry_gives_up_at_the_stop_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("redis.retry.sleep", lambda _seconds: None)
    deadline: list[float | None] = [None]
    retry = PatientRetry(lambda: "w1", stop_deadline=lambda: deadline[0])
    dropped: list[Exception] = []
    down = RedisConnectionError("Connection refused")
    assert (
        retry.call_with_retry(_failing(30, down), dropped.append) == "OK"
    )  # not stopping: as long as it takes
    deadline[0] = time.monotonic()  # a stop was requested and its grace is over
    with pytest.raises(StopRequested):
        retry.call_with_retry(_failing(10**9, down), dropped.append)
    assert dropped[-1] is down  # the connection was dropped before giving up, as redis-py needs
    calls = [0]

    def counted() -> str:
        calls[0] += 1
        raise down

    with pytest.raises(StopRequested):  # still away: not even tried again
        retry.call_with_retry(counted, dropped.append)
    assert calls[0] == 0


def test_patient_retry_says_back_once_when_redis_answers_not_when_a_quiet_poll_ends(
    proxied_redis, caplog
) -> None:
    """RQ's pubsub thread polls with a timeout: on a cut network a poll hears nothing and returns as it
    does on a quiet channel. Redis is back when the call that failed gets an answer, after the heal."""
    backs: list[float] = []
    client = redis_client(redis_through(proxied_redis), SHORT)
    client.set_retry(PatientRetry(lambda: "w1", on_back=backs.append))
    assert client.ping()
    pubsub = client.pubsub()
    pubsub.subscribe(**{"volfefe-test": lambda _message: None})
    polls = pubsub.run_in_thread(sleep_time=0.3, daemon=True)
    healed_at: list[float] = []

    def heal() -> None:
        healed_at.append(time.time())
        proxied_redis.heal()

    try:
        proxied_redis.pause()
        healer = threading.Timer(3 * SHORT.redis_socket_timeout + 1, heal)  # polls time out meanwhile
        healer.start()
        assert client.ping()  # retried until the heal
        healer.join()
    finally:
        polls.stop()
        polls.join(5)
        pubsub.close()
    said = [(record.created, record.getMessage()) for record in caplog.records if record.name == "rq.worker"]
    cut = [at for at, message in said if "Redis is unreachable" in message]
    back = [at for at, message in said if "Redis is back" in message]
    assert len(cut) == 1 and len(back) == 1 and len(backs) == 1, said
    assert back[0] >= healed_at[0], said


# -- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture
def proxied_postgres(postgres_server: PostgresServer):
    with BlackHoleProxy(("127.0.0.1", postgres_server._require_port())) as proxy:
        yield proxy


def test_postgres_sessions_carry_the_server_side_bounds_and_migrations_do_not(postgres_url: str) -> None:
    engine = bounded_engine(postgres_url, DEFAULTS)
    try:
        with engine.connect() as connection:
            shown = [
                connection.execute(text(f"SHOW {name}")).scalar()
                for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
            ]
            keepalive = connection.connection.dbapi_connection.info.get_parameters()
    finally:
        engine.dispose()
    assert shown == ["15s", "10s", "15s"]
    assert keepalive.get("keepalives_idle") == "10" and keepalive.get("connect_timeout") == "5"
    migration = migration_engine(postgres_url)
    try:
        with migration.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
    finally:
        migration.dispose()


def test_a_black_holed_postgres_is_dropped_at_the_answer_deadline(
    postgres_url: str, proxied_postgres
) -> None:
    engine = bounded_engine(database_through(postgres_url, proxied_postgres), SHORT)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
            proxied_postgres.pause()
            started = time.monotonic()
            with pytest.raises(OperationalError) as raised:
                connection.execute(text("SELECT 2"))
            waited = time.monotonic() - started
        assert "no answer from the database within" in str(raised.value)
        assert waited < SHORT.database_statement_timeout + ANSWER_GRACE + 1
        proxied_postgres.heal()
        with engine.connect() as connection:  # the dropped connection is gone from the pool
            assert connection.execute(text("SELECT 3")).scalar() == 3
    finally:
        engine.dispose()


# -- Redis's memory policy --------------------------------------------------------------------------------


def test_only_an_evicting_policy_with_a_limit_is_a_problem(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert eviction_problem(client) is None  # no maxmemory
        client.config_set("maxmemory-policy", "allkeys-lru")
        assert eviction_problem(client) is None  # an evicting policy that never fires: no limit
        client.config_set("maxmemory", str(64 * 1024 * 1024))
        problem = eviction_problem(client)
        assert problem is not None and "allkeys-lru" in problem and "noeviction" in problem
        client.config_set("maxmemory-policy", "noeviction")
        assert eviction_problem(client) is None
    finally:
        client.config_set("maxmemory", "0")
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


# -- a worker's children die with it ------------------------------------------------------------------------

_FORKING_PARENT = """
import multiprocessing, sys, time
from workers.lifetime import children_die_with_this_process
children_die_with_this_process()
child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
child.start()
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_forked_child_dies_with_its_parent_however_the_parent_ends() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _FORKING_PARENT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        parent.send_signal(signal.SIGKILL)  # no handler, no teardown: only the kernel can end the child
        parent.wait()
        _gone, alive = psutil.wait_procs([child], timeout=10)
        assert alive == [], "the child outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize(
    "reply",
    [
        "OOM command not allowed when used memory > 'maxmemory'.",
        # A script that passed Redis's check at its start and met the limit at its first write (seen
        # from the bulk enqueue's script under memory pressure): redis-py makes it a plain ResponseError.
        "@user_script:15: @user_script: 15: -OOM command not allowed when used memory > 'maxmemory'.",
    ],
)
def test_out_of_memory_is_recognised_whether_a_command_or_a_script_met_it(reply: str) -> None:
    from redis._parsers.base import BaseParser  # how redis-py turns Redis's error reply into an error

    assert (
        out_of_memory(BaseParser.parse_error(reply))
        == "OOM command not allowed when used memory > 'maxmemory'."
    )


def test_other_redis_errors_are_not_out_of_memory() -> None:
    from redis._parsers.base import BaseParser

    for reply in (
        "ERR wrong number of arguments for 'set' command",
        "@user_script:3: Script attempted to access",
    ):
        assert out_of_memory(BaseParser.parse_error(reply)) is None
