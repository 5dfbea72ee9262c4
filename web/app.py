"""The web app: rq-dashboard at ``/rq/``, and any page added with ``register``, under one set of rules.

Every route asks for credentials (``web.auth``); unsafe requests from another origin are refused
(``web.same_origin``); pages that need Redis answer 503 while it is down (``web.redis_health``).
The rules are registered on the app itself, so a blueprint added later (``/metrics``, ``/report``)
gets them by being registered:

    register(app, metrics_blueprint, url_prefix="/metrics", uses_redis=True)
"""

from __future__ import annotations

from flask import Blueprint, Flask, redirect
from werkzeug.wrappers import Response as WerkzeugResponse

from web import rq_dashboard_seam
from web.auth import require_credentials
from web.credentials import Credentials
from web.redis_health import RedisHealth, guard_redis
from web.same_origin import refuse_cross_site

#: where rq-dashboard is mounted (URL path prefix).
DASHBOARD_PREFIX = "/rq"
#: the app's key in ``app.extensions``.
EXTENSION_KEY = "volfefe"


def register(app: Flask, blueprint: Blueprint, url_prefix: str, uses_redis: bool = False) -> None:
    """Add ``blueprint`` at ``url_prefix``; with ``uses_redis``, it answers 503 while Redis is down.

    Credentials and the same-origin rule apply to it like to every route of the app.
    """
    app.register_blueprint(blueprint, url_prefix=url_prefix)
    if uses_redis:
        app.extensions[EXTENSION_KEY]["redis_blueprints"].add(blueprint.name)


def create_app(redis_url: str, credentials: Credentials) -> Flask:
    """The Flask app of the web process, on ``redis_url``, open only to ``credentials``."""
    app = Flask(__name__)
    health = RedisHealth(redis_url)
    redis_blueprints: set[str] = set()
    app.extensions[EXTENSION_KEY] = {"redis_health": health, "redis_blueprints": redis_blueprints}

    # Order matters: before_request functions run in this order, and the first answer wins.
    require_credentials(app, credentials)
    refuse_cross_site(app, also_endpoints=rq_dashboard_seam.STATE_CHANGING_GET_ENDPOINTS)
    guard_redis(app, health, redis_blueprints)

    rq_dashboard_seam.mount_rq_dashboard(app, redis_url, DASHBOARD_PREFIX)
    redis_blueprints.add(rq_dashboard_seam.BLUEPRINT_NAME)

    @app.get("/")
    def index() -> WerkzeugResponse:
        return redirect(f"{DASHBOARD_PREFIX}/")

    return app


def redis_health(app: Flask) -> RedisHealth:
    """The app's view of Redis (for a page that wants to say whether Redis is up)."""
    return app.extensions[EXTENSION_KEY]["redis_health"]  # type: ignore[no-any-return]
