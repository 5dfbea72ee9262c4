"""Whether a database exists, checked without creating it (opening a missing SQLite file creates it)."""

from __future__ import annotations

from pathlib import Path

from db.session import describe
from errors import VolfefeError


class DatabaseMissing(VolfefeError):
    """The SQLite file the settings name does not exist (a read would create it)."""


def require_existing_database(database_url: str) -> None:
    """Raise DatabaseMissing when ``database_url`` is a SQLite file that does not exist."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except ArgumentError:
        return  # not a URL: opening it fails with its own message
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return
    if not Path(path).exists():
        raise DatabaseMissing(f"database {describe(database_url)} does not exist: run `volfefe db upgrade`")
