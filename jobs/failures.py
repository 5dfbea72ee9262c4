"""Telling a post's own failure from its infrastructure's (database, disk, Redis).

An infrastructure failure says nothing about the post: its job goes back to the queue without
using up an attempt, and the worker waits for the infrastructure to return. Everything else is the
post's own failure and goes through RQ's retries, then the failed registry.

The rule: the error, or any error it was raised from, is a connection or operational error of the
database driver or of Redis, or an OS error about the disk (full, I/O, read-only, quota). A
misjudged post (one that raises such an error every time on its own) is caught by a limit on how
often one job may be handed back (``MAX_HAND_BACKS`` in the worker): past it, its failure counts.
"""

from __future__ import annotations

import errno
import re
import sqlite3

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from errors import VolfefeError, first_line

#: OS errors that mean the disk, not the post: no space, I/O error, read-only, over quota.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT})
_INFRASTRUCTURE_TYPES = (
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
)
#: SQLite reports every problem as OperationalError ("no such table" too): these messages are the
#: file's or the disk's, not the schema's or the post's.
_SQLITE_INFRASTRUCTURE = re.compile(
    r"locked|busy|disk|full|unable to open|readonly|read-only|i/o error|no such file", re.IGNORECASE
)


def _database_outage(error: OperationalError) -> bool:
    """PostgreSQL (psycopg) raises OperationalError for connection, shutdown and disk-full states only;
    SQLite for everything, so its message decides."""
    if isinstance(error.orig, sqlite3.OperationalError):
        return bool(_SQLITE_INFRASTRUCTURE.search(str(error.orig)))
    return True


class InfrastructureUnavailable(VolfefeError):
    """The database, its disk or Redis failed; the work is to be done again once it is back."""


def is_infrastructure_failure(error: BaseException) -> bool:
    """Whether ``error`` (or an error in its cause chain) is the infrastructure's, not the post's."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (InfrastructureUnavailable, *_INFRASTRUCTURE_TYPES)):
            return True
        if isinstance(current, OperationalError) and _database_outage(current):
            return True
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def infrastructure_error(error: BaseException) -> InfrastructureUnavailable:
    """``error`` as an InfrastructureUnavailable whose message is its root cause in one line."""
    if isinstance(error, InfrastructureUnavailable):
        return error
    return InfrastructureUnavailable(first_line(error))
