"""One readable line, and a non-zero exit, for every failure a user can cause or meet."""

from __future__ import annotations

import sys
from collections.abc import Callable

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError

from cli.run import WorkersDied
from config import ConfigError, settings
from db.importer import ImportFileError
from db.session import describe
from services.dashboard import DashboardRefused
from services.redis_connection import RedisUnavailable
from services.redis_server import RedisServerError

#: exit status for a failure that is not the user's arguments (those exit 2, as argparse does).
EXIT_FAILURE = 1


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def explain(error: BaseException) -> str | None:
    """The one-line message for a known failure, or None for a bug (which keeps its traceback)."""
    if isinstance(error, OperationalError | DBAPIError):
        try:
            where = describe(settings().database_url)
        except ConfigError:
            where = "DATABASE_URL"
        hint = ""
        if any(marker in str(error) for marker in ("no such table", "UndefinedTable", "does not exist")):
            hint = "; create the tables with `volfefe db upgrade`"
        return f"cannot use the database at {where}: {_first_line(error)}{hint}"
    if isinstance(error, RedisError):
        return f"Redis failed: {_first_line(error)}"
    if isinstance(
        error,
        ConfigError | ImportFileError | RedisUnavailable | RedisServerError | WorkersDied | DashboardRefused,
    ):
        return str(error)
    if type(error).__name__ in {"ModelLoadError", "LabelError"}:  # not imported here: that imports torch
        return str(error)
    return None


def run_command(name: str, command: Callable[[], int]) -> None:
    """Run ``command`` and exit with its status; known failures print ``name: error: ...``, exit 1."""
    try:
        status = command()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        message = explain(error)
        if message is None:
            raise
        print(f"{name}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(status)
