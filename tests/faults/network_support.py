"""What the network-fault scenarios share: URLs that lead through a black-hole proxy, waits on a
process's log lines, and the figures of a stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url

from config import DEFAULT_REDIS_SOCKET_TIMEOUT, DEFAULT_STOP_GRACE
from db.bounds import ANSWER_GRACE
from tests.faults.blackhole import HOST, BlackHoleProxy
from tests.processes import wait_for
from workers.worker import SCHEDULER_STOP_GRACE

#: seconds within which a cut-off peer must be noticed (the issue's bound).
NOTICE_BOUND = 30.0
#: seconds a SIGTERM may take to end a worker whatever Redis and the database do: a Redis call in
#: flight (the socket timeout), the stop's grace, the scheduler process's grace, and slack for 2
#: shared cores; the database's answer deadline (15 + 5 s) is shorter than the first two together.
STOP_BOUND = DEFAULT_REDIS_SOCKET_TIMEOUT + DEFAULT_STOP_GRACE + SCHEDULER_STOP_GRACE + 10.0
#: seconds the database's answer deadline adds to its statement timeout (db.bounds).
GRACE = ANSWER_GRACE


def redis_through(proxy: BlackHoleProxy, db: int = 0) -> str:
    return f"redis://{HOST}:{proxy.port}/{db}"


def database_through(database_url: str, proxy: BlackHoleProxy) -> str:
    """``database_url`` with its host and port replaced by the proxy's."""
    return make_url(database_url).set(host=HOST, port=proxy.port).render_as_string(hide_password=False)


class LogWatch:
    """Waits for lines a process writes to its log after a point (``mark``)."""

    def __init__(self, read: Callable[[], str]) -> None:
        self._read = read
        self._offset = 0

    def mark(self) -> None:
        self._offset = len(self._read())

    def since_mark(self) -> str:
        return self._read()[self._offset :]

    def wait(self, text: str, timeout: float, what: str) -> float:
        """Seconds until ``text`` appeared after the mark (AssertionError with the log after ``timeout``)."""
        started = time.monotonic()
        try:
            wait_for(lambda: text in self.since_mark(), timeout, interval=0.1, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.since_mark()[-4000:]}") from None
        return time.monotonic() - started


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def gone_within(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after waiting up to ``timeout`` seconds for them to end."""
    _gone, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def log_tail(path: Path, characters: int = 4000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no log)"
