"""HTTP basic auth on every route of the app: no page, file or endpoint answers without credentials."""

from __future__ import annotations

from flask import Flask, Response, request

from web.credentials import Credentials

#: the realm the browser shows when it asks for credentials.
REALM = "volfefe"


def require_credentials(app: Flask, credentials: Credentials) -> None:
    """Answer 401 (with a basic-auth challenge) to every request without ``credentials``.

    Registered on the app, not on a blueprint, so that every blueprint registered later is covered.
    """

    @app.before_request
    def _require_credentials() -> Response | None:
        given = request.authorization
        if given is not None and given.type == "basic" and credentials.match(given.username, given.password):
            return None
        return Response(
            "credentials required\n",
            401,
            {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"', "Content-Type": "text/plain"},
        )
