"""``volfefe report --html FILE [--source S] [--author A] [--since DATE] [--until DATE]``: write the
sentiment picture (``reports``) to one self-contained HTML file, and print its path."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

from config import settings
from db.existence import require_existing_database
from db.session import session_scope
from errors import VolfefeError
from reports.selection import FILTER_NAMES, Selection, make_selection


class PageNotWritten(VolfefeError):
    """The HTML file could not be written where it was asked for."""


class ReportOptionsError(VolfefeError):
    """Options of ``volfefe report`` that do not go together."""


def check_report_options(args: argparse.Namespace) -> None:
    """ReportOptionsError when a filter is given without ``--html``, or ``--html`` with ``--json``/``--uncertain``."""
    given = [f"--{name}" for name in FILTER_NAMES if getattr(args, name) is not None]
    if args.html is None and given:
        raise ReportOptionsError(f"{', '.join(given)} narrow the --html page: add --html FILE")
    if args.html is not None and (args.json or args.uncertain is not None):
        raise ReportOptionsError("--html writes the page alone: leave out --json and --uncertain")


def write_html_report(database_url: str, path: Path, selection: Selection) -> Path:
    """Write the page of ``selection`` to ``path`` (replacing it whole, never half-written); the path written.

    Reads the database only: DatabaseMissing when a SQLite database does not exist (nothing is
    created); PageNotWritten when the file cannot be written.
    """
    # Imported here: matplotlib takes a second or two to import, and only the page needs it.
    from reports.page import render_page
    from reports.picture import build_picture

    require_existing_database(database_url)
    with session_scope(database_url) as session:
        picture = build_picture(session, selection, models=settings().model_names)
    page = render_page(picture, with_filters=False)
    target = path.expanduser().absolute()
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise PageNotWritten(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PageNotWritten(f"cannot write {path}: {error.strerror or error}") from None
    return target


def print_html_report(database_url: str, args: argparse.Namespace) -> int:
    """Write the page that ``args`` ask for and print its path; 0 once it is written."""
    selection = make_selection(args.source, args.author, args.since, args.until)
    print(write_html_report(database_url, args.html, selection))
    return 0
