"""rq-dashboard as the ``web`` process: on localhost unless told otherwise, never open without auth."""

from __future__ import annotations

import ipaddress
import os

#: the dashboard's default address: this machine only.
DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 9181


class DashboardRefused(ValueError):
    """The dashboard would be reachable from other machines without credentials."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything


def dashboard_command(bind: str = DEFAULT_BIND, port: int = DEFAULT_PORT) -> list[str]:
    """The rq-dashboard command line.

    The Redis URL (which may hold a password) and the credentials travel in the environment
    (``dashboard_environment``, RQ_DASHBOARD_USERNAME / _PASSWORD), never in argv, which ``ps`` shows.
    """
    has_auth = bool(os.environ.get("RQ_DASHBOARD_USERNAME") and os.environ.get("RQ_DASHBOARD_PASSWORD"))
    if not is_loopback(bind) and not has_auth:
        raise DashboardRefused(
            f"refusing to serve the dashboard on {bind} without credentials: set RQ_DASHBOARD_USERNAME "
            "and RQ_DASHBOARD_PASSWORD, or bind 127.0.0.1"
        )
    return ["rq-dashboard", "--bind", bind, "--port", str(port)]


def dashboard_environment(redis_url: str) -> dict[str, str]:
    """The environment to run rq-dashboard in: this one, plus the Redis URL it reads."""
    return {**os.environ, "RQ_DASHBOARD_REDIS_URL": redis_url}
