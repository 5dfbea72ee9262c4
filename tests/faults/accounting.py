"""The fault suite's one checker: is every content accounted for, and none twice?

It reads the database and RQ's own keys for the classification queue, without side effects (RQ's
``registry.count`` and ``get_job_ids`` clean as they read; this does not), and returns:

- **lost**: contents with non-empty visible text that have neither a classification nor a visible
  failure (their job in the failed registry, or still pending: queued, scheduled or started);
- **doubled**: contents with more than one classification row by one model (the unique constraint
  forbids it: checked anyway), or whose job is live more than once (two entries in the queue, queued
  and scheduled, two started executions, ...);
- **inconsistent**: classified contents whose consensus is missing or is not made of exactly the
  configured models' current rows (with their labels).

With several models (``models``), a content counts as classified once every one of them has a row.

Job ids carry their database's identity (``classify-content-<id>-<database id>``): a database is
accounted for against its own jobs only, on its queue (``VOLFEFE_QUEUE``, default
``ml_classification``). ``misattributed`` checks the other way round, for runs where several
databases share one Redis: every classification row is the one its own database's job reported.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from redis import Redis
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from config import DEFAULT_MODEL_NAME
from db.identity import database_id
from db.models import Classification, Consensus, Content
from db.session import session_scope
from jobs.outcomes import CLASSIFIED
from jobs.queue import SERIALIZER, classification_queue, job_id_for, parse_job_id
from model.visible_text import visible_text
from services.redis_client import redis_client


@dataclass
class Accounting:
    contents: int = 0
    #: contents whose visible text is empty (expected to end skipped, never classified).
    empty_text: int = 0
    classified: int = 0
    skipped: int = 0
    #: contents with text whose job is in the failed registry (a visible failure, not a loss).
    failed: list[int] = field(default_factory=list)
    #: contents with text, unclassified, whose job is queued, scheduled or started.
    pending: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    doubled: list[int] = field(default_factory=list)
    #: classified contents whose consensus is missing or does not match their models' rows.
    inconsistent: list[int] = field(default_factory=list)
    #: job ids left in the queue's intermediate list (popped by a worker, never started or handed
    #: back); RQ's maintenance fails such a job as "stuck" a minute after it first sees it.
    stranded: list[str] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Nothing pending: every content with text is classified or visibly failed."""
        return not self.pending

    def summary(self) -> dict[str, int]:
        counts = {
            key: len(value) if isinstance(value, list) else value for key, value in asdict(self).items()
        }
        return counts

    def __str__(self) -> str:
        details = {
            key: value[:10] for key, value in asdict(self).items() if isinstance(value, list) and value
        }
        return f"{self.summary()} {details}"


def live_job_counts(connection: Redis, queue_name: str | None = None) -> Counter[str]:
    """How many times each job id is live: in the queue list, the scheduled registry, or started."""
    queue = classification_queue(connection, queue_name)
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.lrange(queue.key, 0, -1)
        pipeline.zrange(queue.scheduled_job_registry.key, 0, -1)
        pipeline.zrange(queue.started_job_registry.key, 0, -1)
        queued, scheduled, started = pipeline.execute()
    live: Counter[str] = Counter()
    live.update(member.decode() for member in queued)
    live.update(member.decode() for member in scheduled)
    # Started entries are "<job id>:<execution id>".
    live.update(member.decode().rsplit(":", 1)[0] for member in started)
    return live


def failed_job_ids(connection: Redis, queue_name: str | None = None) -> set[str]:
    key = classification_queue(connection, queue_name).failed_job_registry.key
    return {member.decode() for member in connection.zrange(key, 0, -1)}


def stranded_job_ids(connection: Redis, queue_name: str | None = None) -> list[str]:
    key = classification_queue(connection, queue_name).intermediate_queue_key
    return [member.decode() for member in connection.lrange(key, 0, -1)]


def account(
    database_url: str,
    redis_url: str,
    queue_name: str | None = None,
    models: Sequence[str] = (DEFAULT_MODEL_NAME,),
) -> Accounting:
    """Account for every content of ``database_url`` against its jobs on the queue ``queue_name``
    (default: the configured one) at ``redis_url``; classified means classified by every one of ``models``."""
    identity = database_id(database_url)
    with session_scope(database_url) as session:
        contents = session.execute(select(Content.id, Content.text, Content.skip_reason)).all()
        per_model = session.execute(
            select(
                Classification.content_id, Classification.model, Classification.sentiment, func.count()
            ).group_by(Classification.content_id, Classification.model, Classification.sentiment)
        ).all()
        agreed = {
            content_id: {name: reading.get("sentiment") for name, reading in readings.items()}
            for content_id, readings in session.execute(select(Consensus.content_id, Consensus.models))
        }
    labels: dict[int, dict[str, str]] = {}
    copies: dict[int, int] = {}
    for content_id, model, sentiment, count in per_model:
        if model in models:
            labels.setdefault(content_id, {})[model] = sentiment
        copies[content_id] = max(copies.get(content_id, 0), count)
    connection = redis_client(redis_url)
    try:
        live = live_job_counts(connection, queue_name)
        failed = failed_job_ids(connection, queue_name)
        stranded = stranded_job_ids(connection, queue_name)
    finally:
        connection.close()

    result = Accounting(contents=len(contents), stranded=stranded)
    for content_id, text, skip_reason in contents:
        job_id = job_id_for(content_id, identity)
        has_text = bool(visible_text(text))
        done = len(labels.get(content_id, {})) == len(models)
        if not has_text:
            result.empty_text += 1
        if done:
            result.classified += 1
            if agreed.get(content_id) != labels[content_id]:
                result.inconsistent.append(content_id)
        elif skip_reason is not None:
            result.skipped += 1
        # Rows per (content, model, sentiment) above one would be two rows of one model; and two rows of
        # one model with different labels show as more labels than models.
        if copies.get(content_id, 0) > 1 or live[job_id] > 1:
            result.doubled.append(content_id)
        if not has_text or done:
            continue
        if live[job_id]:
            result.pending.append(content_id)
        elif job_id in failed:
            result.failed.append(content_id)
        else:
            result.lost.append(content_id)
    # A live job of this database for an id with no content row (e.g. a bad id) can be doubled too.
    known = {job_id_for(content_id, identity) for content_id, *_ in contents}
    for job_id, count in live.items():
        parsed = parse_job_id(job_id)
        if count > 1 and job_id not in known and parsed is not None and parsed[1] == identity:
            result.doubled.append(parsed[0])
    return result


def misattributed(database_url: str, redis_url: str) -> list[int]:
    """Contents of ``database_url`` whose classification is not what its own database's job reported.

    A row must have been written by the job ``classify-content-<id>-<this database>`` (which then
    finished ``classified`` with the row's sentiment and confidence); a row written by a job of another
    database run against this one (its text was this database's, its result went to the other's job),
    or a job of this database that says it classified a content that has no row here, is counted.
    For runs without faults that re-run jobs (a re-run finds the row and reports it skipped).
    """
    identity = database_id(database_url)
    with session_scope(database_url) as session:
        rows = {
            content_id: (sentiment, confidence)
            for content_id, sentiment, confidence in session.execute(
                select(Classification.content_id, Classification.sentiment, Classification.confidence)
            )
        }
        content_ids = list(session.scalars(select(Content.id)))
    connection = Redis.from_url(redis_url)
    try:
        jobs = Job.fetch_many(
            [job_id_for(content_id, identity) for content_id in content_ids],
            connection,
            serializer=SERIALIZER,
        )
    finally:
        connection.close()
    wrong: list[int] = []
    for content_id, job in zip(content_ids, jobs, strict=True):
        reported = None
        if job is not None and job.get_status(refresh=False) == JobStatus.FINISHED:
            value = job.return_value(refresh=False)
            if isinstance(value, dict) and value.get("status") == CLASSIFIED:
                reported = (value.get("sentiment"), value.get("confidence"))
        row = rows.get(content_id)
        if row is None and reported is None:
            continue
        if row != reported and not _same(row, reported):
            wrong.append(content_id)
    return wrong


def _same(row: tuple | None, reported: tuple | None) -> bool:
    """The same sentiment and confidence (to float precision: the result went through JSON)."""
    if row is None or reported is None or reported[1] is None:
        return False
    return row[0] == reported[0] and math.isclose(row[1], reported[1], abs_tol=1e-6)


@dataclass
class ReactionAccounting:
    """Every published post linked to assets against its reaction job (``react-content-<id>-<db id>``)."""

    #: published posts with stored entities: each must end with a reaction or a visible failure.
    posts: int = 0
    #: posts with exactly one row per linked symbol and window.
    reacted: int = 0
    #: posts whose reaction job is in the failed registry (a visible failure, not a loss).
    failed: list[int] = field(default_factory=list)
    #: posts without their rows whose job is queued, scheduled or started.
    pending: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    #: a (post, symbol, window) stored twice (the primary key forbids it: checked anyway), or a job live
    #: more than once.
    doubled: list[int] = field(default_factory=list)
    #: posts with rows, but not exactly one per linked symbol and window.
    partial: list[int] = field(default_factory=list)
    stranded: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return str(
            {key: value[:10] if isinstance(value, list) else value for key, value in asdict(self).items()}
        )


def account_reactions(
    database_url: str, redis_url: str, windows: Sequence[str], queue_name: str | None = None
) -> ReactionAccounting:
    """Account for the reaction of every published, linked post of ``database_url`` (one row per linked
    symbol and each of ``windows``) against its job on the queue."""
    from db.models import ContentAsset, ContentEntities, Reaction
    from jobs.queue import react_job_id_for

    identity = database_id(database_url)
    with session_scope(database_url) as session:
        posts = list(
            session.scalars(
                select(Content.id)
                .join(ContentEntities, ContentEntities.content_id == Content.id)
                .where(Content.published_at.is_not(None))
            )
        )
        linked: dict[int, set[str]] = {}
        for content_id, symbol in session.execute(select(ContentAsset.content_id, ContentAsset.symbol)):
            linked.setdefault(content_id, set()).add(symbol)
        stored = session.execute(
            select(Reaction.content_id, Reaction.symbol, Reaction.window, func.count()).group_by(
                Reaction.content_id, Reaction.symbol, Reaction.window
            )
        ).all()
    rows: dict[int, Counter[tuple[str, str]]] = {}
    for content_id, symbol, window, count in stored:
        rows.setdefault(content_id, Counter())[(symbol, window)] = count
    connection = redis_client(redis_url)
    try:
        live = live_job_counts(connection, queue_name)
        failed = failed_job_ids(connection, queue_name)
        stranded = stranded_job_ids(connection, queue_name)
    finally:
        connection.close()
    result = ReactionAccounting(posts=len(posts), stranded=stranded)
    for content_id in posts:
        job_id = react_job_id_for(content_id, identity)
        found = rows.get(content_id, Counter())
        expected = {(symbol, window) for symbol in linked.get(content_id, ()) for window in windows}
        if any(count > 1 for count in found.values()) or live[job_id] > 1:
            result.doubled.append(content_id)
        if found and set(found) == expected:
            result.reacted += 1
        elif found:
            result.partial.append(content_id)
        elif live[job_id]:
            result.pending.append(content_id)
        elif job_id in failed:
            result.failed.append(content_id)
        else:
            result.lost.append(content_id)
    return result
