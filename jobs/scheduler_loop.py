"""The scheduler process's loop: a pass every interval, through any Redis outage, until asked to stop.

A pass refreshes the scheduler's key, takes rq-scheduler's lock (so two schedulers never both
enqueue), keeps the schedule (``jobs.schedule.keep_schedule``), moves due jobs onto the queue and
releases the lock. When a pass fails on Redis (connection refused or reset, a timeout, a server
still loading its data, a read-only replica, any other Redis error) it is abandoned and tried again
with backoff; the outage is logged once when it starts, then every ``reminder`` seconds, and once
when Redis is back. Only a refused password or user (a setting to fix) and errors that are not
Redis's end the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError
from redis.retry import Retry

from errors import first_line
from jobs.json_scheduler import JsonScheduler
from services.redis_connection import client_for
from services.redis_memory import eviction_problem

logger = logging.getLogger(__name__)

#: seconds between two passes of the scheduler.
DEFAULT_INTERVAL = 10.0
#: seconds before the first new attempt once Redis is unreachable; doubled after each failure.
FIRST_BACKOFF = 0.5
#: seconds between attempts at most while Redis is unreachable.
DEFAULT_MAX_BACKOFF = 5.0
#: seconds between two "still unreachable" lines while Redis stays unreachable.
DEFAULT_REMINDER = 60.0
#: seconds to wait for Redis to accept a connection.
CONNECT_TIMEOUT = 2.0
#: seconds to wait for Redis to answer a command (a hung server counts as an outage).
COMMAND_TIMEOUT = 5.0
#: times a failed command is tried again at once, on a fresh connection, before the pass is abandoned.
COMMAND_RETRIES = 1

#: errors that end the loop though Redis sent them: credentials to fix, not an outage to wait out.
SETTING_ERRORS = (AuthenticationError, AuthorizationError)


def scheduler_connection(url: str) -> Redis:
    """A client for ``url`` (plain or Sentinel-managed) with bounded waits, made without contacting
    Redis (it may be down): the configured bounds, with shorter waits of its own (a pass sends short
    commands only), and one retry on a fresh connection (a pooled one is dead after a restart or a
    failover); the loop's own backoff does the rest.

    RedisUnavailable, in one line without the password, when ``url`` is not a Redis URL.
    """
    return client_for(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), COMMAND_RETRIES),
    )


class Backoff:
    """Waits that double from ``first`` up to ``cap`` seconds; ``reset`` starts over."""

    def __init__(self, first: float = FIRST_BACKOFF, cap: float = DEFAULT_MAX_BACKOFF) -> None:
        self.first = first
        self.cap = cap
        self._failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self._failures)
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0


class OutageLog:
    """Says once that Redis is unreachable, again every ``reminder`` seconds while it stays so, and
    once when it is back (with how long it was gone)."""

    def __init__(
        self, where: str, reminder: float, max_backoff: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.where = where
        self.reminder = reminder
        self.max_backoff = max_backoff
        self.clock = clock
        self.since: float | None = None
        self._last_said = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> None:
        now = self.clock()
        if self.since is None:
            self.since = self._last_said = now
            logger.warning(
                "Redis at %s unreachable (%s); trying again every %g s at most until it is back",
                self.where,
                first_line(error),
                self.max_backoff,
            )
        elif now - self._last_said >= self.reminder:
            self._last_said = now
            logger.warning(
                "Redis at %s still unreachable after %.0f s (%s)",
                self.where,
                now - self.since,
                first_line(error),
            )

    def recovered(self) -> None:
        if self.since is not None:
            logger.warning("Redis at %s is back after %.1f s", self.where, self.clock() - self.since)
            self.since = None


class SchedulerLoop:
    """Runs ``scheduler`` every ``interval`` seconds until ``stop()``; rides out Redis outages.

    ``keep`` runs inside each pass while the lock is held (``jobs.schedule.keep_schedule``).
    """

    def __init__(
        self,
        scheduler: JsonScheduler,
        keep: Callable[[JsonScheduler], object],
        where: str,
        interval: float = DEFAULT_INTERVAL,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        reminder: float = DEFAULT_REMINDER,
    ) -> None:
        self.scheduler = scheduler
        self.keep = keep
        self.interval = interval
        self.backoff = Backoff(cap=max_backoff)
        self.outage = OutageLog(where, reminder, max_backoff)
        self.passes = 0
        self._stopping = threading.Event()
        #: whether Redis's memory policy was looked at (once, at the first pass that reached Redis).
        self._memory_checked = False

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Ask the loop to end after the pass under way (safe from a signal handler)."""
        self._stopping.set()

    def run(self) -> None:
        """Pass after pass until ``stop()``; then release the lock and register the scheduler's death."""
        while not self.stopping:
            started = time.monotonic()
            try:
                self.run_pass()
            except RedisError as error:
                if isinstance(error, SETTING_ERRORS):
                    raise
                self.outage.failed(error)
                self._stopping.wait(self.backoff.next())
                continue
            self.backoff.reset()
            self.passes += 1
            if self.passes == 1:
                logger.info(
                    "scheduler running on queue %r, a pass every %g s",
                    self.scheduler.queue_name,
                    self.interval,
                )
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))
        self._sign_off()

    def run_pass(self) -> bool:
        """One pass; False when another scheduler held the lock (it does the work this time)."""
        scheduler = self.scheduler
        scheduler.keep_alive()
        self.outage.recovered()  # said before what the pass finds, so the log reads in order
        if not self._memory_checked:
            self._memory_checked = True
            problem = eviction_problem(scheduler.connection)
            if problem is not None:  # a warning only: the sweeps it schedules run in workers, which refuse
                logger.warning("%s", problem)
        if not scheduler.acquire_lock():
            logger.debug("lock held by another scheduler: skipping this pass")
            return False
        try:
            self.keep(scheduler)
            scheduler.enqueue_jobs()
        finally:
            scheduler.remove_lock()
        return True

    def _sign_off(self) -> None:
        """Release the lock and register the death, unless Redis is known to be away: then the lock
        expires by itself, and the stop takes no more than the pass under way."""
        if self.outage.down:
            logger.info("stopped without signing off in Redis: it is unreachable")
        else:
            try:
                self.scheduler.remove_lock()
                self.scheduler.register_death()
            except RedisError as error:
                logger.info("stopped without signing off in Redis: %s", first_line(error))
        logger.info("scheduler stopped")
