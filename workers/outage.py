"""Riding out outages: a worker waits for its database or Redis instead of failing posts or quitting.

- ``DatabaseOutage``: when the database (or its disk) fails, the worker hands its jobs back and
  stops taking new ones; it probes the database with backoff (a tiny write, so a full disk counts)
  and resumes by itself when the probe passes.
- ``PatientRetry``: redis-py's Retry for the worker's connection, retrying connection errors for as
  long as Redis is away (a restart, a crash, a network cut: a black-holed connection fails with a
  timeout after ``REDIS_SOCKET_TIMEOUT``) or out of memory (``maxmemory`` with ``noeviction``
  refuses writes until there is room), logging once when it goes and once when it is back, with a
  reminder every ``REMINDER_INTERVAL`` seconds in between; once a stop is requested it tries only
  until the stop's deadline, then ends the call with RQ's StopRequested, so that one SIGTERM ends
  the worker whatever the state of Redis;
  ``postpone_maintenance`` keeps a worker that sees Redis return from recovering jobs that other
  live workers are about to finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq.exceptions import StopRequested
from rq.utils import now
from sqlalchemy import text

from db.session import describe, session_scope
from errors import first_line
from services.redis_memory import out_of_memory

if TYPE_CHECKING:
    from rq.worker import BaseWorker

log = logging.getLogger("rq.worker")

#: seconds before the first probe of a database that failed; doubled after each failed probe.
PROBE_BASE = 1.0
#: seconds between probes at most: recovery is noticed within this after the outage ends.
PROBE_CAP = 10.0
#: seconds after a passed probe within which a new failure continues the same outage (and its backoff).
SAME_OUTAGE_WITHIN = 60.0
#: seconds between "still unavailable" reminders in the log.
REMINDER_INTERVAL = 60.0
#: seconds of backoff between Redis reconnection attempts, first and at most.
REDIS_RETRY_BASE = 0.1
REDIS_RETRY_CAP = 5.0


def probe_database(database_url: str) -> None:
    """A real write that changes nothing: fails while the server, the file or the disk is unavailable."""
    with session_scope(database_url) as session:
        session.execute(text("UPDATE volfefe_database SET created_at = created_at"))


class DatabaseOutage:
    """The state of one outage: when it began, when to probe next, and the log lines about it.

    A failure within ``SAME_OUTAGE_WITHIN`` seconds of the probe passing continues the same outage:
    its backoff goes on instead of starting over. A probe can pass while real writes still fail (a
    disk too full for a batch has room for the probe's page), and starting over would have the
    worker take, classify and hand back a batch every ``PROBE_BASE`` seconds for as long as it lasts.
    """

    def __init__(self, database_url: str, probe: Callable[[str], None] = probe_database) -> None:
        self.database_url = database_url
        self._probe = probe
        self.since: float | None = None
        self._next_probe = 0.0
        self._delay = PROBE_BASE
        self._reminded = 0.0
        #: when the last outage ended (its probe passed), and when it had begun.
        self._ended: tuple[float, float] | None = None
        #: whether this outage has failed again after a passed probe (said once, then as a reminder).
        self._flapping = False

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self, cause: BaseException, worker_name: str) -> None:
        """Start (or continue) waiting; the first report of an outage is logged, later ones are not."""
        now = time.monotonic()
        if self.since is None and self._ended is not None and now - self._ended[0] < SAME_OUTAGE_WITHIN:
            self.since = self._ended[1]
            if not self._flapping or now - self._reminded >= REMINDER_INTERVAL:
                self._flapping = True
                self._reminded = now
                log.warning(
                    "Worker %s: the database failed again right after answering a probe (%s), %.0f s "
                    "into the outage; probing every %.0f s at most",
                    worker_name,
                    first_line(cause),
                    now - self.since,
                    PROBE_CAP,
                )
        elif self.since is None:
            self.since = self._reminded = now
            self._delay = PROBE_BASE
            self._flapping = False
            log.warning(
                "Worker %s: the database at %s is unavailable (%s); jobs handed back unrun, no attempt "
                "used; taking no jobs until it answers",
                worker_name,
                describe(self.database_url),
                first_line(cause),
            )
        self._next_probe = now + self._delay
        self._delay = min(self._delay * 2, PROBE_CAP)

    def due(self) -> bool:
        return self.active and time.monotonic() >= self._next_probe

    def try_end(self, worker_name: str) -> bool:
        """Probe the database; end the outage (True) when it answers, else back off (False)."""
        try:
            self._probe(self.database_url)
        except Exception as error:  # any failure of the probe means: not back yet
            now = time.monotonic()
            if now - self._reminded >= REMINDER_INTERVAL:
                self._reminded = now
                log.warning(
                    "Worker %s: the database is still unavailable after %.0f s (%s)",
                    worker_name,
                    now - (self.since or now),
                    first_line(error),
                )
            self._next_probe = now + self._delay
            self._delay = min(self._delay * 2, PROBE_CAP)
            return False
        now = time.monotonic()
        since = self.since if self.since is not None else now
        log.warning(
            "Worker %s: the database answers again after %.1f s; taking jobs", worker_name, now - since
        )
        self._ended = (now, since)
        self.since = None
        return True


class PatientRetry(Retry):
    """Retry Redis connection errors and out-of-memory refusals for as long as they last, saying so in
    the log, until a stop's deadline.

    One object serves every connection of the client (``__deepcopy__``: redis-py copies the retry into
    each connection it makes), so that an outage is reported once, and a stop is seen by all. redis-py
    nests its calls (a command, the connection's handshake inside it, the socket's connect inside
    that): Redis is back when the outermost one of a call that failed gets an answer (a result, or an
    error reply), not when a socket connects to a route that forwards nothing, and not when another
    thread's call ends without having failed: RQ's pubsub thread polls with a timeout, and a poll that
    heard nothing on a cut network returns as a poll on a quiet channel does.
    """

    def __init__(
        self,
        name: Callable[[], str],
        on_back: Callable[[float], None] | None = None,
        stop_deadline: Callable[[], float | None] = lambda: None,
    ) -> None:
        """``name()`` names the worker in the log; ``on_back(seconds_away)`` runs when Redis answers
        again; ``stop_deadline()`` is the monotonic time after which a failed call is not tried again
        (None: no stop requested), and the call raises StopRequested instead."""
        backoff = ExponentialWithJitterBackoff(base=REDIS_RETRY_BASE, cap=REDIS_RETRY_CAP)
        super().__init__(
            backoff, -1, supported_errors=(RedisConnectionError, RedisTimeoutError, OutOfMemoryError)
        )
        self._name = name
        self._on_back = on_back
        self._stop_deadline = stop_deadline
        self._down_since: float | None = None
        self._reminded = 0.0
        #: per thread: ``depth``, the nesting of call_with_retry; ``failed``, whether the outermost call
        #: met a failure (only such a call can tell that Redis is back).
        self._calls = threading.local()

    def __deepcopy__(self, memo: dict) -> PatientRetry:
        return self

    def _past_stop_deadline(self) -> bool:
        deadline = self._stop_deadline()
        return deadline is not None and time.monotonic() >= deadline

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        if self._down_since is not None and self._past_stop_deadline():
            raise StopRequested()  # stopping, and Redis did not come back in time: try no more
        calls = self._calls

        def noted_fail(error, *failure_count):
            calls.failed = True
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = self._reminded = now
                if isinstance(error, OutOfMemoryError):
                    log.warning(
                        "Worker %s: Redis refuses writes, out of memory (%s); retrying until it has room",
                        self._name(),
                        first_line(error),
                    )
                else:
                    log.warning(
                        "Worker %s: Redis is unreachable (%s); retrying until it is back", self._name(), error
                    )
            elif now - self._reminded >= REMINDER_INTERVAL:
                self._reminded = now
                log.warning(
                    "Worker %s: Redis still unreachable after %.0f s", self._name(), now - self._down_since
                )
            outcome = fail(error, *failure_count)  # first: redis-py drops the connection in its state
            if self._past_stop_deadline():
                raise StopRequested() from error
            return outcome

        def refusals_as_out_of_memory():
            try:
                return do()
            except ResponseError as error:
                # A script refused at its first write (it wrote nothing) is a plain ResponseError in
                # redis-py: waited out like a command refused for memory.
                refusal = None if isinstance(error, OutOfMemoryError) else out_of_memory(error)
                if refusal is not None:
                    raise OutOfMemoryError(refusal) from error
                raise

        depth = getattr(calls, "depth", 0)
        if depth == 0:
            calls.failed = False
        calls.depth = depth + 1
        try:
            result = super().call_with_retry(
                refusals_as_out_of_memory, noted_fail, is_retryable, with_failure_count
            )
        except ResponseError as error:  # an error reply: Redis answered
            if depth == 0 and not isinstance(error, OutOfMemoryError):
                self._answered()
            raise
        finally:
            calls.depth = depth
        if depth == 0:
            self._answered()
        return result

    def _answered(self) -> None:
        """The outermost call of this thread got an answer: the end of the outage, if it met it."""
        down_since = self._down_since
        if down_since is None or not self._calls.failed:
            return
        self._down_since = None
        away = time.monotonic() - down_since
        log.warning("Worker %s: Redis is back after %.1f s", self._name(), away)
        if self._on_back is not None:
            self._on_back(away)


def postpone_maintenance(worker: BaseWorker) -> Callable[[float], None]:
    """An ``on_back`` for PatientRetry: the worker's next maintenance pass waits a full interval.

    While Redis was away no worker could refresh a heartbeat, so the started jobs of every live worker
    look abandoned when it returns (their entries expired: a batch of 32 after 62 s, a job alone after
    30 s). Recovering them then would retry jobs that are being finished (an attempt used, and a second
    run). Each worker that held such jobs reconnects within one Redis backoff (``REDIS_RETRY_CAP``) and
    finishes or heartbeats them; a maintenance interval later, only a dead worker's jobs are left.
    """

    def postpone(_seconds_away: float) -> None:
        worker.last_cleaned_at = now()  # RQ runs maintenance maintenance_interval after this

    return postpone
