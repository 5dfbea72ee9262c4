"""``/metrics``: the whole system's figures for a Prometheus server (``jobs.metrics``), in the format it asks for.

Registered on the web app like any page (credentials, 503 while Redis is down). Its registry holds only
the collectors that read Redis and the database at scrape time: no figure of this process (no
``process_*`` or ``python_*`` series), so any web process of the system answers the same.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from config import Settings
from jobs.metrics import DatabaseCollector, QueueCollector
from services.redis_connection import client_for

#: seconds to wait for Redis to accept a connection, and to answer a command, during a scrape.
REDIS_TIMEOUT = 5.0


def metrics_blueprint(redis_url: str, config: Settings) -> Blueprint:
    """The ``metrics`` blueprint: register it at ``/metrics`` (``web.app.register``, ``uses_redis=True``)."""
    connection = client_for(redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(connection, config.queue_name))
    window = timedelta(minutes=config.metrics_window_minutes)
    registry.register(
        DatabaseCollector(config.database_url, connection, config.queue_name, window, config.model_names)
    )
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get("")
    def metrics() -> Response:
        # Prometheus asks for OpenMetrics, which has a type for the gauge histograms.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(registry), 200, {"Content-Type": content_type})

    return blueprint
