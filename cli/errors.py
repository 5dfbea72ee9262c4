"""One readable line, and a non-zero exit, for every failure a user can cause or meet.

Failures are recognised by type: ``errors.VolfefeError`` (every project error), SQLAlchemy's
``DBAPIError`` (the database driver failed) and redis-py's ``RedisError``. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from errors import VolfefeError, first_line

#: exit status for a failure that is not the user's arguments (those exit 2, as argparse does).
EXIT_FAILURE = 1
#: exit status when the reader of standard output went away (``volfefe status | head -1``): 128 + SIGPIPE,
#: what the shell reports for any program that a broken pipe ends (``yes | head -1``). Not 0: the output
#: was not all delivered, so ``set -o pipefail`` scripts see the same status as from any other tool.
EXIT_BROKEN_PIPE = 128 + 13
#: exit status after Ctrl-C (128 + SIGINT), as the shell reports it.
EXIT_INTERRUPTED = 128 + 2
#: texts of a driver error that mean the tables were never created.
_NO_TABLES = ("no such table", "does not exist")


def explain(error: BaseException) -> str | None:
    """The one-line message for a known failure, or None for a bug (which keeps its traceback)."""
    if isinstance(error, VolfefeError):
        return str(error)
    if isinstance(error, DBAPIError):  # OperationalError, ProgrammingError, ... all subclass it
        cause = first_line(error)
        hint = "; create the tables with `volfefe db upgrade`" if any(t in cause for t in _NO_TABLES) else ""
        return f"cannot use the database at {_database_location()}: {cause}{hint}"
    if isinstance(error, RedisError):
        return f"cannot use Redis at {_redis_location()}: {first_line(error)}"
    return None


def _database_location() -> str:
    from config import ConfigError, settings
    from db.session import describe

    try:
        return describe(settings().database_url)
    except ConfigError:
        return "DATABASE_URL"


def _redis_location() -> str:
    from cli.readonly import running_redis_url
    from config import ConfigError, settings
    from services.redis_connection import safe_url

    try:
        url = running_redis_url(settings())
    except ConfigError:
        return "REDIS_URL"
    return safe_url(url) if url else "the embedded redis-server (not running)"


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush cannot fail again.

    What the Python docs recommend for SIGPIPE (library/signal.html, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run_command(name: str, command: Callable[[], int]) -> None:
    """Run ``command`` and exit with its status; known failures print ``name: error: ...``, exit 1.

    A reader that closes the pipe early ends the command quietly with EXIT_BROKEN_PIPE.
    """
    try:
        status = command()
        sys.stdout.flush()  # inside the try: a closed pipe shows up here when the output was buffered
    except BrokenPipeError:
        _quiet_stdout()
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as error:
        message = explain(error)
        if message is None:
            raise
        print(f"{name}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(status)
