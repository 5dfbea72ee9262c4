"""Bounds on every PostgreSQL connection: how long to wait to connect, to run, to be answered.

- ``connect_timeout`` (``DATABASE_CONNECT_TIMEOUT``): a server that does not accept is unreachable;
- TCP keepalives and ``tcp_user_timeout`` (``TCP_KEEPALIVE_*``): on a cut network, the kernel drops a
  connection whose peer has stopped answering, idle or with data in flight;
- ``statement_timeout``, ``idle_in_transaction_session_timeout`` (``DATABASE_STATEMENT_TIMEOUT``) and
  ``lock_timeout`` (``DATABASE_LOCK_TIMEOUT``), set by the server on each session: a statement, a
  silent open transaction (whose client is gone: its locks would block every other worker) or a
  wait for a lock ends with an error;
- an answer deadline (``AnsweringConnection``): the server answers every statement within the
  statement timeout, with a result or with its own cancellation; a client that has heard nothing
  ``ANSWER_GRACE`` seconds later knows the connection is gone (a peer that keeps the TCP connection
  open but forwards nothing, which keepalives cannot see) and drops it with an OperationalError,
  which the worker treats as the outage it is.

Migrations run without the statement bounds (an index build grows with its table).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.connection import _WAIT_INTERVAL
from sqlalchemy.engine import make_url

from config import Settings

#: seconds beyond the statement timeout a client waits for an answer before dropping the connection.
ANSWER_GRACE = 5.0


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def connect_arguments(url: str, config: Settings, statement_bounds: bool = True) -> dict[str, Any]:
    """psycopg connection parameters for ``url`` under ``config``'s bounds.

    Options the URL gives (``?options=-c ...``) come after ours, so that they win.
    """
    keepalive_total = config.tcp_keepalive_idle + config.tcp_keepalive_interval * config.tcp_keepalive_count
    arguments: dict[str, Any] = {
        "connect_timeout": config.database_connect_timeout,
        "keepalives": 1,
        "keepalives_idle": config.tcp_keepalive_idle,
        "keepalives_interval": config.tcp_keepalive_interval,
        "keepalives_count": config.tcp_keepalive_count,
        "tcp_user_timeout": keepalive_total * 1000,
    }
    if statement_bounds:
        statement = _milliseconds(config.database_statement_timeout)
        settings = {
            "statement_timeout": statement,
            "idle_in_transaction_session_timeout": statement,
            "lock_timeout": _milliseconds(config.database_lock_timeout),
        }
    else:
        settings = {"statement_timeout": 0, "idle_in_transaction_session_timeout": 0, "lock_timeout": 0}
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    given = make_url(url).query.get("options")
    if given:
        options = f"{options} {given if isinstance(given, str) else ' '.join(given)}"
    arguments["options"] = options
    return arguments


def answer_deadline(config: Settings) -> float:
    """Seconds a statement may go unanswered before its connection counts as gone."""
    return config.database_statement_timeout + ANSWER_GRACE


class AnsweringConnection(psycopg.Connection):
    """A psycopg connection that gives up on an answer after ``answer_deadline`` seconds.

    Every statement, commit and rollback waits through ``Connection.wait`` (psycopg 3.3: the cursor's
    execute and fetch, the transaction's begin and end); given no timeout of its own, the wait gets
    the deadline. When it passes, psycopg's ``_WaitTimeout`` (which its ``wait`` raises for a timeout)
    becomes an OperationalError saying what happened, and the connection is closed: its state is
    unknown, and SQLAlchemy then drops it from its pool instead of trying a rollback on it.
    """

    #: seconds; None: wait as long as it takes (psycopg's own behaviour).
    answer_deadline: float | None = None

    def wait(self, gen, interval: float = _WAIT_INTERVAL, timeout: float | None = None):  # type: ignore[override]
        if timeout is not None or self.answer_deadline is None:
            return super().wait(gen, interval=interval, timeout=timeout)
        try:
            return super().wait(gen, interval=interval, timeout=self.answer_deadline)
        except pg_errors._WaitTimeout:
            self.close()
            raise psycopg.OperationalError(
                f"no answer from the database within {self.answer_deadline:g} s: connection dropped"
            ) from None
