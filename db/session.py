"""Engines and sessions: one engine per database URL per process, its connections bounded (``db.bounds``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from config import Settings, settings
from db.bounds import AnsweringConnection, answer_deadline, connect_arguments


@cache
def engine_for(url: str) -> Engine:
    """The process-wide engine for ``url`` (pool_pre_ping so a restarted server is survived).

    PostgreSQL connections are bounded by the configured limits (``bounded_engine``).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return bounded_engine(url, settings())


def bounded_engine(url: str, config: Settings) -> Engine:
    """A PostgreSQL engine whose connections have ``config``'s bounds (``db.bounds``): connect timeout,
    keepalives, statement, lock and idle-transaction timeouts, and an answer deadline (psycopg 3)."""
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_arguments(url, config)
    )
    if make_url(url).get_driver_name() != "psycopg":
        return engine  # the answer deadline is psycopg 3's (the driver the README names)
    deadline = answer_deadline(config)

    @event.listens_for(engine, "do_connect")
    def _answering(_dialect, _record, cargs, cparams) -> AnsweringConnection:
        connection = AnsweringConnection.connect(*cargs, **cparams)
        connection.answer_deadline = deadline
        return connection

    return engine


def migration_engine(url: str) -> Engine:
    """An engine for one migration run: PostgreSQL's connect bounds, but no statement, lock or answer
    bounds (an index build takes as long as its table needs), and no pool (nothing stays connected)."""
    if url.startswith("sqlite"):
        return engine_for(url)
    return create_engine(
        url, poolclass=NullPool, connect_args=connect_arguments(url, settings(), statement_bounds=False)
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the report and status commands read while workers write.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@cache
def session_factory(url: str) -> sessionmaker[Session]:
    """The process-wide session factory for ``url`` (a ``sessionmaker`` makes a Session class of its
    own, with its event hooks: ~0.1 ms, once, not at every session)."""
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with session_factory(url).begin() as session:
        yield session


def describe(url: str) -> str:
    """A database URL with its password as ``***``, for messages; an unparsable URL as ``DATABASE_URL``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "DATABASE_URL (not a database URL)"
