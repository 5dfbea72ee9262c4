"""Every call into rq-dashboard's internals, in one place (checked against rq-dashboard 0.9.0, RQ 3.0.0).

rq-dashboard is mounted the documented way (``default_settings``, ``RQ_DASHBOARD_REDIS_URL``,
``setup_rq_connection``, its blueprint under a prefix). What its documentation does not cover:

- ``rq_dashboard.web.config.serializer`` is what its ``--json`` option sets: jobs are read as JSON.
- Its views also call ``Job.fetch``, ``Worker.all`` and ``requeue_job`` without a serializer, which
  in RQ means pickle: unpickling a job from Redis runs whatever code the payload names, so in this
  process those three names, looked up in ``rq_dashboard.web`` at call time, are replaced by
  versions whose default serializer is JSON.
- ``/requeue/<queue>`` requeues every failed job on GET as well as POST (``STATE_CHANGING_GET_ENDPOINTS``).
- Its pages show the Redis URL, masked by ``escape_format_instance_list`` (which misses a
  ``password=`` parameter): replaced by ``safe_url`` of the URL as given.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import rq_dashboard
import rq_dashboard.web as dashboard_web
from flask import Flask, Response, request
from redis import Redis
from rq import requeue_job
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import Worker

from services.redis_connection import safe_url

#: the blueprint's name (Flask's ``request.blueprint`` for its routes).
BLUEPRINT_NAME = "rq_dashboard"
#: endpoints that change state even when asked with GET: every method on them is checked for origin.
STATE_CHANGING_GET_ENDPOINTS = frozenset({f"{BLUEPRINT_NAME}.requeue_all"})
#: seconds rq-dashboard's own Redis clients wait (it makes a client per request from the URL).
CLIENT_TIMEOUT = 5.0

log = logging.getLogger(__name__)


class JsonJob(Job):
    """``Job`` whose ``fetch`` reads JSON when no serializer is given (RQ's default is pickle)."""

    @classmethod
    def fetch(cls, id: str, connection: Redis | None = None, serializer: Any = None) -> Job:
        return super().fetch(id, connection=connection, serializer=serializer or JSONSerializer)


class JsonWorker(Worker):
    """``Worker`` whose ``all`` reads workers and their current jobs with JSON when no serializer is given."""

    @classmethod
    def all(  # type: ignore[override]
        cls,
        connection: Redis | None = None,
        job_class: type[Job] | None = None,
        queue_class: Any = None,
        queue: Any = None,
        serializer: Any = None,
    ) -> list[Any]:
        return super().all(
            connection=connection,
            job_class=job_class or JsonJob,
            queue_class=queue_class,
            queue=queue,
            serializer=serializer or JSONSerializer,
        )


def requeue_json_job(job_id: str, connection: Redis, serializer: Any = None) -> Job:
    """``rq.requeue_job`` reading the job with JSON when no serializer is given."""
    return requeue_job(job_id, connection=connection, serializer=serializer or JSONSerializer)


def _with_client_timeouts(url: str) -> str:
    """``url`` with socket timeouts as query parameters (redis-py reads them), unless it sets its own."""
    given = {key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    missing = {
        key: str(CLIENT_TIMEOUT) for key in ("socket_timeout", "socket_connect_timeout") if key not in given
    }
    if not missing:
        return url
    # Appended by hand: urlunsplit would turn ``unix:///path`` into ``unix:/path``.
    return f"{url}{'&' if '?' in url else '?'}{urlencode(missing)}"


def mount_rq_dashboard(app: Flask, redis_url: str, url_prefix: str) -> None:
    """Register rq-dashboard's blueprint at ``url_prefix``, on ``redis_url``, reading jobs as JSON only."""
    shown = [safe_url(redis_url)]
    dashboard_web.escape_format_instance_list = lambda _urls: shown  # type: ignore[attr-defined]
    dashboard_web.config.serializer = JSONSerializer
    dashboard_web.Job = JsonJob  # type: ignore[attr-defined]
    dashboard_web.Worker = JsonWorker  # type: ignore[attr-defined]
    dashboard_web.requeue_job = requeue_json_job  # type: ignore[attr-defined]
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = _with_client_timeouts(redis_url)
    dashboard_web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=url_prefix)
    app.register_error_handler(DeserializationError, _not_json)


def _not_json(error: DeserializationError) -> Response:
    """A job whose data is not JSON (a pickle payload, say) is not read: one line, not a traceback."""
    reason = "a job in Redis holds data that is not JSON: not read"
    log.warning("%s (%s)", reason, request.path)
    return Response(f"{reason}\n", 500, {"Content-Type": "text/plain"})
