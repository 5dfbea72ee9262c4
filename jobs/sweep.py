"""The sweep: enqueue every content that lacks a configured model's classification.

``enqueue.py --all`` enqueues them all, oldest first. The hourly schedule enqueues every new post (no
classification at all) and then at most ``VOLFEFE_BACKFILL_PER_SWEEP`` contents that lack only a
model added to VOLFEFE_MODELS later: a backfill of millions goes at that pace, and a new post never
waits behind more than that many backfill jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain

from redis import Redis

from config import Settings, settings
from db.queries import unclassified_id_pages
from db.session import session_factory
from jobs.queue import EnqueueReport, enqueue_id_pages


def sweep(
    connection: Redis, database_url: str, limit: int | None = None, models: Sequence[str] | None = None
) -> EnqueueReport:
    """Enqueue a unique job for each content lacking a classification by one of ``models`` (default: the
    configured ones), the oldest ``limit`` ones or all.

    Contents whose job failed are enqueued again once their failure's cool-down has passed.
    """
    names = models if models is not None else settings().model_names
    return enqueue_id_pages(connection, database_url, _pages(database_url, names, limit, "missing"))


def hourly_sweep(connection: Redis, config: Settings) -> tuple[EnqueueReport, int]:
    """The scheduled sweep: every new post, then up to ``config.backfill_per_sweep`` contents that lack
    only a model added later (or their entities); then the reactions that are due (``jobs.react``).
    Returns the classification report and how many of its contents were backfill."""
    names = config.model_names
    url = config.database_url
    backfill: list[int] = []

    def backfill_pages() -> Iterator[list[int]]:
        for page in _pages(url, names, config.backfill_per_sweep, "backfill"):
            backfill.extend(page)
            yield page

    pages = chain(_pages(url, names, None, "new"), backfill_pages())
    report = enqueue_id_pages(connection, url, pages)
    if report.stopped is None:
        sweep_reactions(connection, config)
    return report, len(backfill)


def sweep_reactions(connection: Redis, config: Settings) -> EnqueueReport:
    """Enqueue the reactions that are missing, or older than an import of prices that covers them."""
    from jobs.queue import enqueue_reactions
    from jobs.react import reactions_due

    with session_factory(config.database_url)() as session:
        due = reactions_due(session)
    return enqueue_reactions(connection, config.database_url, due, config.queue_name, again=True)


def _pages(database_url: str, models: Sequence[str], limit: int | None, scope: str) -> Iterator[list[int]]:
    """The ids a page at a time, each page read in a transaction of its own (a sweep of a large backlog
    holds no read transaction open while it enqueues)."""
    if limit == 0:
        return
    with session_factory(database_url)() as session:
        for page in unclassified_id_pages(session, models, limit, scope=scope):
            session.rollback()  # only read: ends the page's transaction
            yield page


def scheduled_sweep() -> dict[str, int]:
    """The hourly job registered by scheduler.py: a sweep of the worker's database on the Redis it runs on."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        raise RuntimeError("scheduled_sweep runs as an RQ job")
    report, backfill = hourly_sweep(job.connection, settings())
    return {
        "enqueued": len(report.enqueued),
        "already_pending": len(report.already_pending),
        "cooling_down": len(report.cooling_down),
        "backfill": backfill,
    }
