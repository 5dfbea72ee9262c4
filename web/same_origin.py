"""No state change from another site: an unsafe request must come from a page of this very origin.

Browsers send ``Origin`` with every POST, PUT, PATCH and DELETE (and a ``Referer`` where a privacy
setting drops it); a form or script on another site cannot forge either. Together with the
credentials check this stops cross-site forms and scripts that ride on credentials the browser
remembers (CSRF). Pages also forbid being framed by others (clickjacking).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request

#: methods that may change state (RFC 9110's unsafe methods that browsers send cross-site).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: default port of each scheme, so that ``http://host`` and ``http://host:80`` are one origin.
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]


def origin_of(url: str) -> Origin | None:
    """``(scheme, host, port)`` of ``url``, lower-cased with the default port filled in; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS.get(scheme)


def cross_site_reason(own_url: str, origin: str | None, referer: str | None) -> str | None:
    """Why a state-changing request is refused, or None when it comes from ``own_url``'s origin."""
    own = origin_of(own_url)
    if origin is not None:
        sent, header = origin, "Origin"
    elif referer:
        sent, header = referer, "Referer"
    else:
        return "a state-changing request needs an Origin or Referer header from this site"
    if origin_of(sent) != own or own is None:
        return f"cross-site request refused: its {header} is not this site"
    return None


def refuse_cross_site(app: Flask, also_endpoints: Iterable[str] = ()) -> None:
    """Answer 403 with a one-line reason to unsafe requests from another origin (or from nowhere).

    ``also_endpoints`` are endpoints that change state even on GET: every method on them is checked.
    """
    checked_endpoints = frozenset(also_endpoints)

    @app.before_request
    def _refuse_cross_site() -> Response | None:
        if request.method not in UNSAFE_METHODS and request.endpoint not in checked_endpoints:
            return None
        reason = cross_site_reason(
            request.host_url, request.headers.get("Origin"), request.headers.get("Referer")
        )
        if reason is None:
            return None
        app.logger.warning("refused %s %s: %s", request.method, request.path, reason)
        return Response(f"{reason}\n", 403, {"Content-Type": "text/plain"})

    @app.after_request
    def _forbid_framing(response: Response) -> Response:
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
