"""Ride out a Redis outage: while Redis is down, pages that need it answer 503, and the process lives on.

Each request to such a page first PINGs Redis (one short round trip). The outage is logged once
when it starts and once when it ends, never per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, request
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from errors import first_line
from services.redis_connection import client_for, safe_url

#: seconds to wait for Redis to accept a connection before calling it down.
CONNECT_TIMEOUT = 2.0
#: seconds to wait for Redis to answer a command before calling it down.
COMMAND_TIMEOUT = 5.0
#: seconds a client is told to wait before trying again (the Retry-After header).
RETRY_AFTER = 5

log = logging.getLogger(__name__)


class RedisHealth:
    """Whether Redis answers, with the start and end of each outage logged once."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        """Watch the Redis at ``url``; RedisUnavailable when ``url`` is not a Redis URL."""
        self.where = safe_url(url)
        # One retry on a fresh connection: a pooled connection is dead after a Redis restart.
        self._client = client_for(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def problem(self) -> str | None:
        """None when Redis answers PING, else a one-line reason (and the outage is recorded)."""
        try:
            self._client.ping()
        except RedisError as error:
            return self.went_down(first_line(error))
        self.answered()
        return None

    def went_down(self, cause: str) -> str:
        """Record that Redis failed with ``cause``; log it if this starts an outage. Returns the reason."""
        reason = f"Redis is unavailable at {self.where}: {cause}"
        with self._lock:
            starts = self._down_since is None
            if starts:
                self._down_since = self._clock()
        if starts:
            log.warning("%s (answering 503 until it is back)", reason)
        return reason

    def answered(self) -> None:
        """Record that Redis answered; log the end of an outage if one was going on."""
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("Redis is back at %s after %.0f s", self.where, self._clock() - since)

    @property
    def client(self) -> Redis:
        """The client it checks Redis with (bounded waits, one retry)."""
        return self._client

    @property
    def down(self) -> bool:
        """True during an outage (from the first failure to the next answer)."""
        return self._down_since is not None


def unavailable(reason: str) -> Response:
    """The 503 response: one line saying why, and when to try again."""
    return Response(f"{reason}\n", 503, {"Content-Type": "text/plain", "Retry-After": str(RETRY_AFTER)})


def guard_redis(app: Flask, health: RedisHealth, blueprints: set[str]) -> None:
    """Answer 503 on the ``blueprints``' routes while Redis is down, and on any route where Redis fails.

    ``blueprints`` is read at each request, so blueprints registered later can join it.
    """

    @app.before_request
    def _require_redis() -> Response | None:
        if request.blueprint not in blueprints:
            return None
        reason = health.problem()
        return None if reason is None else unavailable(reason)

    def _failed(error: Exception) -> Response:
        return unavailable(health.went_down(first_line(error)))

    # Redis can go away between the PING and the page's own commands.
    app.register_error_handler(RedisConnectionError, _failed)
    app.register_error_handler(RedisTimeoutError, _failed)
