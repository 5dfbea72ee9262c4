"""Who may reach the web process: this machine by default; other machines only with credentials set.

Generated credentials (``web.credentials``) are shown on one terminal and kept in one file: good
enough for a process only this machine can reach, not for one on the network, where the operator
must choose them and set them in the environment.
"""

from __future__ import annotations

import ipaddress

from errors import VolfefeError

#: the web process's default address: this machine only.
DEFAULT_BIND = "127.0.0.1"


class DashboardRefused(VolfefeError):
    """The web process would be reachable from other machines without credentials chosen for it."""


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything


def check_exposure(bind: str, credentials_in_environment: bool) -> None:
    """Raise DashboardRefused when ``bind`` reaches beyond this machine without credentials in the environment."""
    if not is_loopback(bind) and not credentials_in_environment:
        raise DashboardRefused(
            f"refusing to serve the dashboard on {bind} without credentials: set RQ_DASHBOARD_USERNAME "
            "and RQ_DASHBOARD_PASSWORD, or bind 127.0.0.1"
        )
