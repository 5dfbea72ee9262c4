"""Bounded Redis clients, for a plain Redis and a Sentinel-managed primary alike.

Every client the project makes waits a bounded time for a connection (``REDIS_CONNECT_TIMEOUT``) and
for any answer (``REDIS_SOCKET_TIMEOUT``), keeps TCP keepalive on (``TCP_KEEPALIVE_*``), and PINGs a
connection that sat idle longer than ``REDIS_HEALTH_CHECK_INTERVAL`` before using it: a Redis that is
cut off without closing the connection (a black-holed network) is noticed within the socket timeout,
instead of a call hanging for as long as the kernel keeps the connection.

``REDIS_URL`` may name a Sentinel-managed primary::

    redis+sentinel://[:password@]host[:port][,host2[:port2]...]/service_name[/db][?socket_timeout=...]

(port 26379 when none is given), the form rq-dashboard reads: it is parsed by the same library
(``redis_sentinel_url``), so the web process's dashboard and every other process read one URL alike.
The password is the primary's; ``sentinel_socket_timeout`` and ``sentinel_socket_connect_timeout`` in
the query apply to the sentinels. Clients ask the sentinels where the primary is at every new
connection, retries included (``services.sentinel_connection``), so a failover is followed by
reconnecting.

RQ's own commands build their client from ``--url``/``RQ_REDIS_URL`` with ``Redis.from_url``, which
knows no ``redis+sentinel`` scheme: ``--connection-class services.redis_client.BoundedRedis`` (or
``RQ_CONNECTION_CLASS``, which ``scripts/activate`` exports) makes them use ``redis_client``.
"""

from __future__ import annotations

import socket
from typing import Any

from redis import Redis
from redis.connection import Connection
from redis.sentinel import Sentinel
from redis_sentinel_url import parse_sentinel_url

from config import Settings, settings
from services.sentinel_connection import PrimaryFollowingConnection

#: the URL scheme of a Sentinel-managed primary (rq-dashboard's).
SENTINEL_SCHEME = "redis+sentinel"


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def keepalive_options(config: Settings) -> dict[int, int]:
    """The TCP keepalive socket options (Linux names) of ``TCP_KEEPALIVE_*``."""
    return {
        socket.TCP_KEEPIDLE: config.tcp_keepalive_idle,
        socket.TCP_KEEPINTVL: config.tcp_keepalive_interval,
        socket.TCP_KEEPCNT: config.tcp_keepalive_count,
    }


def connection_bounds(config: Settings, tcp: bool = True) -> dict[str, Any]:
    """redis-py connection arguments for the configured bounds (keepalive only over TCP)."""
    bounds: dict[str, Any] = {
        "socket_connect_timeout": config.redis_connect_timeout,
        "socket_timeout": config.redis_socket_timeout,
        "health_check_interval": config.redis_health_check_interval,
    }
    if tcp:
        bounds |= {"socket_keepalive": True, "socket_keepalive_options": keepalive_options(config)}
    return bounds


def redis_client(url: str, config: Settings | None = None, **options: Any) -> Redis:
    """A redis-py client for ``url`` (no connection made yet) with the configured bounds.

    ``options`` replace bounds (a command with a shorter timeout of its own); options in the URL's
    query replace both, as redis-py's ``from_url`` has it. Raises ValueError for a URL that cannot be used.
    """
    config = config or settings()
    if is_sentinel_url(url):
        return _sentinel_client(url, config, options)
    tcp = not url.strip().lower().startswith("unix:")
    return Redis.from_url(url, **{**connection_bounds(config, tcp), **options})


def _sentinel_client(url: str, config: Settings, options: dict[str, Any]) -> Redis:
    parsed = parse_sentinel_url(url)
    kind, service = parsed.default_client
    if not service:
        raise ValueError(
            f"a {SENTINEL_SCHEME} URL names its primary: {SENTINEL_SCHEME}://host:26379/<name>/<db>"
        )
    if kind != "master":
        raise ValueError("the queue needs the primary: a replica (client_type=slave) cannot take writes")
    bounds = connection_bounds(config)
    sentinel_options = {**bounds, **parsed.sentinel_options}
    sentinel_options.pop("health_check_interval")
    sentinel = Sentinel(
        parsed.hosts, sentinel_kwargs=sentinel_options, **{**bounds, **options, **parsed.client_options}
    )
    return sentinel.master_for(service, connection_class=PrimaryFollowingConnection)


def bound_connection(connection: Redis, config: Settings) -> None:
    """Give the existing client ``connection`` (one RQ's command line built) the configured bounds.

    Its pool's connections are dropped, so that every connection from now on is made with them. A
    client whose connections are not redis-py's own sockets (a test's fakeredis) is left as it is.
    """
    pool = connection.connection_pool
    ours = issubclass(pool.connection_class, PrimaryFollowingConnection)
    if not (ours or pool.connection_class.__module__.startswith("redis.")):
        return
    tcp = issubclass(pool.connection_class, Connection)  # a Sentinel-managed connection is a TCP one
    bounds = connection_bounds(config, tcp)
    for key in ("socket_timeout", "socket_connect_timeout"):  # redis-py 8 restores these after a relaxed wait
        if f"orig_{key}" in pool.connection_kwargs:
            bounds[f"orig_{key}"] = bounds[key]
    pool.connection_kwargs.update(bounds)
    pool.disconnect()
    pool.reset()


class BoundedRedis(Redis):
    """``rq worker --connection-class services.redis_client.BoundedRedis`` (``RQ_CONNECTION_CLASS``):
    RQ's commands with the configured bounds, and with ``redis+sentinel://`` URLs."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Redis:  # type: ignore[override]
        return redis_client(url, **kwargs)
