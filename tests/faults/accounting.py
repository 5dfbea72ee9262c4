"""The fault suite's one checker: is every content accounted for, and none twice?

It reads the database and RQ's own keys for the classification queue, without side effects (RQ's
``registry.count`` and ``get_job_ids`` clean as they read; this does not), and returns:

- **lost**: contents with non-empty visible text that have neither a classification nor a visible
  failure (their job in the failed registry, or still pending: queued, scheduled or started);
- **doubled**: contents with more than one classification row (the unique constraint forbids it:
  checked anyway), or whose job is live more than once (two entries in the queue, queued and
  scheduled, two started executions, ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from redis import Redis
from sqlalchemy import func, select

from db.models import Classification, Content
from db.session import session_scope
from jobs.queue import classification_queue, content_id_of, job_id_for
from workers.visible_text import visible_text


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


def live_job_counts(connection: Redis) -> Counter[str]:
    """How many times each job id is live: in the queue list, the scheduled registry, or started."""
    queue = classification_queue(connection)
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


def failed_job_ids(connection: Redis) -> set[str]:
    key = classification_queue(connection).failed_job_registry.key
    return {member.decode() for member in connection.zrange(key, 0, -1)}


def stranded_job_ids(connection: Redis) -> list[str]:
    key = classification_queue(connection).intermediate_queue_key
    return [member.decode() for member in connection.lrange(key, 0, -1)]


def account(database_url: str, redis_url: str) -> Accounting:
    """Account for every content of ``database_url`` against the classification queue at ``redis_url``."""
    with session_scope(database_url) as session:
        contents = session.execute(
            select(Content.id, Content.text, Content.classified, Content.skip_reason)
        ).all()
        rows = dict(
            session.execute(
                select(Classification.content_id, func.count()).group_by(Classification.content_id)
            ).all()
        )
    connection = Redis.from_url(redis_url)
    try:
        live = live_job_counts(connection)
        failed = failed_job_ids(connection)
        stranded = stranded_job_ids(connection)
    finally:
        connection.close()

    result = Accounting(contents=len(contents), stranded=stranded)
    for content_id, text, _classified, skip_reason in contents:
        job_id = job_id_for(content_id)
        has_text = bool(visible_text(text))
        row_count = rows.get(content_id, 0)
        if not has_text:
            result.empty_text += 1
        if row_count:
            result.classified += 1
        elif skip_reason is not None:
            result.skipped += 1
        if row_count > 1 or live[job_id] > 1:
            result.doubled.append(content_id)
        if not has_text or row_count:
            continue
        if live[job_id]:
            result.pending.append(content_id)
        elif job_id in failed:
            result.failed.append(content_id)
        else:
            result.lost.append(content_id)
    # A live job for an id with no content row (e.g. a bad id) can be doubled too.
    known = {job_id_for(content_id) for content_id, *_ in contents}
    for job_id, count in live.items():
        content_id = content_id_of(job_id)
        if count > 1 and job_id not in known and content_id is not None:
            result.doubled.append(content_id)
    return result
