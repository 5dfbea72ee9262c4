"""The sweep: enqueue every unclassified content. ``enqueue.py --all`` and the hourly schedule run it."""

from __future__ import annotations

from collections.abc import Iterator

from redis import Redis

from config import settings
from db.queries import unclassified_id_pages
from db.session import session_factory
from jobs.queue import EnqueueReport, enqueue_id_pages


def sweep(connection: Redis, database_url: str, limit: int | None = None) -> EnqueueReport:
    """Enqueue a unique job for each unclassified content (the oldest ``limit`` ones, or all).

    Contents whose job failed are enqueued again once their failure's cool-down has passed.
    """
    return enqueue_id_pages(connection, database_url, _unclassified_pages(database_url, limit))


def _unclassified_pages(database_url: str, limit: int | None) -> Iterator[list[int]]:
    """The unclassified ids a page at a time, each page read in a transaction of its own (a sweep of a
    large backlog holds no read transaction open while it enqueues)."""
    with session_factory(database_url)() as session:
        for page in unclassified_id_pages(session, limit):
            session.rollback()  # only read: ends the page's transaction
            yield page


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
