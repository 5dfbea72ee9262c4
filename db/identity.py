"""Which database this is: the identity ``volfefe db upgrade`` gave it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from db.models import DatabaseIdentity
from db.session import describe, session_scope
from errors import VolfefeError

#: the database's identity: its first (and only) row of ``volfefe_database``.
_IDENTITY = select(DatabaseIdentity.id).order_by(DatabaseIdentity.created_at).limit(1)


class DatabaseNotInitialised(VolfefeError):
    """The database has no identity yet (its tables were never created, or are from before it)."""


def identity_in(session: Session) -> str | None:
    """The identity of the session's database, read in its transaction (None: the table is empty)."""
    return session.scalar(_IDENTITY)


def database_id(database_url: str) -> str:
    """The identity of the database at ``database_url``; DatabaseNotInitialised when it has none.

    Read at every call (one small query), never cached: a database reset at the same URL (deleted and
    upgraded again, or dropped and created) is a new database, also to a long-lived process (a worker
    running the hourly sweep, the web process), which would otherwise enqueue under the old identity.
    """
    try:
        with session_scope(database_url) as session:
            identity = identity_in(session)
    except (OperationalError, ProgrammingError) as error:
        text = str(error.orig if hasattr(error, "orig") else error)
        if "volfefe_database" not in text:
            raise
        identity = None
    if identity is None:
        raise DatabaseNotInitialised(
            f"the database at {describe(database_url)} has no tables yet: run `volfefe db upgrade`"
        )
    return identity
