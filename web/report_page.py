"""``/report``: the sentiment picture (``reports``) of the web process, narrowed by query parameters.

``/report?source=truth_social&author=...&since=2025-01-01&until=2025-03-31`` (each optional). Served
under the app's rules (credentials, same origin; it does not need Redis). It reads the database only,
and never creates a SQLite file. Answers: 200 with the page (also when there is nothing to show yet),
400 for a bad filter, 503 when the database is missing or does not answer, each error in one line.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from sqlalchemy.exc import DBAPIError

from config import settings
from db.existence import DatabaseMissing, require_existing_database
from db.session import describe, session_scope
from errors import first_line
from reports.selection import InvalidSelection, selection_from_query

#: the blueprint's name (Flask endpoint prefix).
BLUEPRINT_NAME = "report"


def _plain(message: str, status: int) -> Response:
    return Response(message + "\n", status, {"Content-Type": "text/plain; charset=utf-8"})


def report_blueprint(database_url: str) -> Blueprint:
    """The ``/report`` page on ``database_url``; register it with ``web.app.register(app, ..., "/report")``."""
    blueprint = Blueprint(BLUEPRINT_NAME, __name__)

    @blueprint.get("")
    def report() -> Response:
        # Imported here: matplotlib takes a second or two to import, and only this page needs it.
        from reports.page import CONTENT_SECURITY_POLICY, render_page
        from reports.picture import build_picture

        try:
            selection = selection_from_query(request.args)
        except InvalidSelection as error:
            return _plain(f"bad filter: {error}", 400)
        try:
            require_existing_database(database_url)
            with session_scope(database_url) as session:
                picture = build_picture(session, selection, models=settings().model_names)
        except DatabaseMissing as error:
            return _plain(str(error), 503)
        except DBAPIError as error:
            return _plain(f"cannot read the database at {describe(database_url)}: {first_line(error)}", 503)
        return Response(
            render_page(picture, with_filters=True),
            200,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-store",
            },
        )

    return blueprint
