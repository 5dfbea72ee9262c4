"""INSERT with the session's dialect's ON CONFLICT clauses (PostgreSQL's and SQLite's are two classes).

The stores build each such statement once per dialect (``functools.cache`` on the dialect's name) and
on the table, not the mapped class: a job's write is a few one-row statements, and building one
costs as much as running it (``excluded`` alone makes a proxy of every column: ~0.7 ms), while the
ORM's bulk-insert path adds its bookkeeping to rows that have only server defaults.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_INSERTS: dict[str, Callable] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_for(dialect: str) -> Callable:
    """``postgresql.insert`` or ``sqlite.insert``."""
    return _INSERTS[dialect]
