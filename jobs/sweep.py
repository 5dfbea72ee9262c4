"""The sweep: enqueue every unclassified content. ``enqueue.py --all`` and the hourly schedule run it."""

from __future__ import annotations

from redis import Redis

from config import settings
from db.queries import unclassified_ids
from db.session import session_scope
from jobs.queue import EnqueueReport, enqueue_ids


def sweep(connection: Redis, database_url: str, limit: int | None = None) -> EnqueueReport:
    """Enqueue a unique job for each unclassified content (the oldest ``limit`` ones, or all).

    Contents whose job failed are enqueued again once their failure's cool-down has passed.
    """
    with session_scope(database_url) as session:
        ids = unclassified_ids(session, limit)
    return enqueue_ids(connection, database_url, ids)


def scheduled_sweep() -> dict[str, int]:
    """The hourly job registered by scheduler.py: a sweep of the worker's database on the Redis it runs on."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        raise RuntimeError("scheduled_sweep runs as an RQ job")
    report = sweep(job.connection, settings().database_url)
    return {
        "enqueued": len(report.enqueued),
        "already_pending": len(report.already_pending),
        "cooling_down": len(report.cooling_down),
    }
