"""services.sentinel_connection: a connection that lost its socket mid-command reconnects to wherever the
sentinels now say the primary is, where redis-py's own class dials the old primary (redis-py#3874).

Two real redis-servers stand for the old and the new primary; the sentinels' answer is a stand-in whose
address the test moves, so that the failover happens exactly between two uses of one connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

from config import load_settings
from services.redis_client import bound_connection, redis_client
from services.redis_server import HOST, RedisServer
from services.sentinel_connection import PrimaryFollowingConnection

pytestmark = pytest.mark.integration

SERVICE = "volfefe"


class Sentinels:
    """What ``redis.sentinel.Sentinel`` answers the pool: the primary's address, as the test sets it."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.primary = address
        self.asked = 0

    def discover_master(self, service_name: str) -> tuple[str, int]:
        assert service_name == SERVICE
        self.asked += 1
        return self.primary


@pytest.fixture
def primaries(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    old, new = RedisServer(tmp_path / "old"), RedisServer(tmp_path / "new")
    old.start()
    new.start()
    try:
        yield old, new
    finally:
        for server in (old, new):
            if server.running:
                server.stop()


def failed_over_connection(
    connection_class: type[SentinelManagedConnection], old: RedisServer, new: RedisServer
) -> tuple[SentinelManagedConnection, Sentinels]:
    """A connection that talked to ``old``; then ``old`` dies, the sentinels name ``new``, and the
    connection is disconnected as a command's retry leaves it (``Redis._close_connection``)."""
    sentinels = Sentinels((HOST, int(old.port or 0)))
    pool = SentinelConnectionPool(
        SERVICE, sentinels, connection_class=connection_class, retry=Retry(NoBackoff(), 2), socket_timeout=5
    )
    connection = pool.get_connection()
    connection.send_command("PING")
    assert connection.read_response() in (b"PONG", "PONG")
    assert connection.port == old.port
    old.stop()
    sentinels.primary = (HOST, int(new.port or 0))
    connection.disconnect()
    return connection, sentinels


def test_redis_pys_own_connection_redials_the_old_primary_on_a_retry(
    primaries: tuple[RedisServer, RedisServer],
) -> None:
    """Why our class exists: if this starts to fail, redis-py has fixed #3874 and it can go."""
    old, new = primaries
    connection, _ = failed_over_connection(SentinelManagedConnection, old, new)
    with pytest.raises(redis.ConnectionError, match=f":{old.port}"):
        connection.send_command("PING")  # send_packed_command -> connect_check_health -> _connect


def test_our_connection_follows_the_primary_on_a_retry(primaries: tuple[RedisServer, RedisServer]) -> None:
    old, new = primaries
    connection, sentinels = failed_over_connection(PrimaryFollowingConnection, old, new)
    asked = sentinels.asked
    connection.send_command("SET", "written-after-the-failover", "1")
    assert connection.read_response() in (b"OK", "OK")
    assert connection.port == new.port and sentinels.asked == asked + 1
    assert redis.Redis.from_url(new.url).get("written-after-the-failover") == b"1"


def test_a_new_connection_goes_to_the_primary_the_sentinels_name(
    primaries: tuple[RedisServer, RedisServer],
) -> None:
    old, new = primaries
    sentinels = Sentinels((HOST, int(new.port or 0)))
    pool = SentinelConnectionPool(SERVICE, sentinels, connection_class=PrimaryFollowingConnection)
    client = redis.Redis(connection_pool=pool)
    client.set("fresh", "1")
    assert redis.Redis.from_url(new.url).get("fresh") == b"1"
    assert redis.Redis.from_url(old.url).get("fresh") is None


def test_every_sentinel_url_client_follows_the_primary_and_keeps_its_bounds() -> None:
    client = redis_client("redis+sentinel://127.0.0.1:26379/mymaster/0", load_settings({}))
    assert client.connection_pool.connection_class is PrimaryFollowingConnection
    config = load_settings({"REDIS_SOCKET_TIMEOUT": "7"})
    bound_connection(client, config)
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 7.0
