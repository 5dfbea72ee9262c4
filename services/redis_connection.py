"""The Redis the commands talk to: ``REDIS_URL``, or the project's own embedded redis-server."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from config import Settings
from services.redis_server import RedisServer

#: seconds to wait for Redis to accept a connection before calling it unreachable.
CONNECT_TIMEOUT = 5.0


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached; the message says where."""


def connect(url: str) -> Redis:
    """A client for ``url`` that has answered PING; RedisUnavailable otherwise."""
    connection = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=30)
    try:
        connection.ping()
    except RedisError as error:
        raise RedisUnavailable(f"cannot reach Redis at {_safe(url)}: {error}") from None
    return connection


def _safe(url: str) -> str:
    """``url`` without its password."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _answers(url: str) -> bool:
    try:
        Redis.from_url(url, socket_connect_timeout=1).ping()
    except RedisError:
        return False
    return True


def embedded_redis_url(data_dir: Path) -> str:
    """The URL of the embedded redis-server in ``data_dir/redis``, started (append-only) if not running.

    It outlives the command that started it, so that the enqueuer, workers and status share it;
    ``volfefe redis-stop`` stops it.
    """
    state = (data_dir / "redis").resolve()
    state.mkdir(parents=True, exist_ok=True)
    url_file = state / "url"
    with (state / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if url_file.exists() and _answers(url := url_file.read_text().strip()):
            return url
        server = RedisServer(state, appendonly=True)
        server.start()
        url_file.write_text(server.url)
        return server.url


def stop_embedded_redis(data_dir: Path) -> bool:
    """Stop the embedded redis-server if it runs; True when one was stopped."""
    url_file = (data_dir / "redis" / "url").resolve()
    if not url_file.exists() or not _answers(url := url_file.read_text().strip()):
        return False
    with contextlib.suppress(RedisError):  # the connection drops as the server exits
        Redis.from_url(url).shutdown()
    url_file.unlink(missing_ok=True)
    return True


def redis_url(config: Settings) -> str:
    """``REDIS_URL`` when set, else the embedded server's URL (starting it if needed)."""
    return config.redis_url or embedded_redis_url(config.data_dir)


def embedded_redis_running(data_dir: Path) -> bool:
    url_file = (data_dir / "redis" / "url").resolve()
    return url_file.exists() and _answers(url_file.read_text().strip())
