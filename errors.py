"""The one base type for failures a user can cause or meet (bad settings, a service down, bad input).

Each carries a message of one readable line that names the real cause; the command line prints it
as ``<command>: error: <message>`` and exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VolfefeError(Exception):
    """A failure with a one-line message for the person at the terminal."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of ``error``'s message (or of the error it wraps), else its type's name.

    Library errors that wrap a driver's (SQLAlchemy's ``orig``, a ``__cause__``) are unwrapped, so the
    line names the cause (``connection refused ...``), not the wrapper's link to its docs.
    """
    cause: BaseException = getattr(error, "orig", None) or error
    text = str(cause).strip()
    if not text and cause.__cause__ is not None:
        text = str(cause.__cause__).strip()
    return text.splitlines()[0][:limit] if text else type(cause).__name__
