"""What the read-only commands (``status``, ``report``) may touch: nothing they would have to start or create.

They use the embedded redis-server only when it already runs, and a SQLite database only when its
file exists (opening a missing one would create it, empty).
"""

from __future__ import annotations

from pathlib import Path

from config import Settings
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


def running_redis_url(config: Settings) -> str | None:
    """``REDIS_URL`` when set, else the embedded server's URL if it is running now (never starts it)."""
    if config.redis_url:
        return config.redis_url
    from services.redis_connection import running_embedded_url

    return running_embedded_url(config.data_dir)
