"""``volfefe web``: serve the web app with waitress (a threaded production WSGI server) until stopped.

It listens on 127.0.0.1 unless told otherwise, and beyond this machine only with credentials set
in the environment (``services.dashboard``). Without them it generates credentials on first start
and shows them once on standard error. It starts whether or not Redis answers, and lives through
Redis outages of any length (``web.redis_health``). SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import waitress
from redis.exceptions import RedisError

from config import Settings
from errors import VolfefeError
from services.dashboard import DEFAULT_BIND, check_exposure
from services.redis_connection import redis_url, safe_url
from services.redis_memory import eviction_problem
from web import credentials as web_credentials
from web.app import DASHBOARD_PREFIX, create_app, redis_health, register
from web.metrics import metrics_blueprint
from web.report_page import report_blueprint

#: request threads of the server: a dashboard page polls several endpoints at once.
THREADS = 8
#: the log line format of the web process (standard error).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)


class WebServerError(VolfefeError):
    """The web process cannot listen where it was asked to."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _warn_if_evicting(app) -> None:
    """One line when Redis would delete jobs to make room: the dashboard shows the queue still
    (services.redis_memory says why this process warns where the job writers refuse)."""
    try:
        problem = eviction_problem(redis_health(app).client)
    except RedisError:
        return  # gone again since it answered: the outage is logged on the next request
    if problem is not None:
        log.warning("%s", problem)


def serve(config: Settings, bind: str | None = None, port: int | None = None) -> int:
    """Serve the web app on ``bind`` (default 127.0.0.1) and ``port`` (default ``PORT``, else 9181) until stopped.

    Raises DashboardRefused for an exposed bind without credentials in the environment,
    CredentialsError for half-set or untrustworthy credentials, WebServerError when it cannot listen.
    """
    # First: a stop that comes while it starts (the listening socket is up before Redis is asked,
    # and that question can wait a socket timeout on a cut route) is a clean exit too.
    signal.signal(signal.SIGTERM, _stop)
    bind = bind or DEFAULT_BIND
    port = port or config.web_port
    check_exposure(bind, credentials_in_environment=bool(config.web_username and config.web_password))
    chosen = web_credentials.from_environment(config)
    if chosen is None:
        chosen, created = web_credentials.generated(config.data_dir)
        if created:
            print(
                f"volfefe web: generated credentials: user {chosen.username!r}, password {chosen.password!r} "
                f"(shown this once; kept in {web_credentials.credentials_file(config.data_dir)}, mode 0600; "
                "set RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD to choose your own)",
                file=sys.stderr,
                flush=True,
            )
    url = redis_url(config)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    app = create_app(url, chosen)
    register(app, report_blueprint(config.database_url), url_prefix="/report")
    register(app, metrics_blueprint(url, config), url_prefix="/metrics", uses_redis=True)
    try:
        server = waitress.create_server(app, host=bind, port=port, threads=THREADS, ident="volfefe")
    except OSError as error:
        raise WebServerError(f"cannot listen on {bind}:{port}: {error.strerror or error}") from None
    if redis_health(app).problem() is None:
        log.info("Redis answers at %s", safe_url(url))
        _warn_if_evicting(app)
    log.info("serving on http://%s:%s%s/ (user %r)", bind, port, DASHBOARD_PREFIX, chosen.username)
    try:
        server.run()
    finally:
        server.close()
    return 0
