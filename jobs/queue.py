"""The classification queue: its name, its job policy, and unique enqueueing of content ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

QUEUE_NAME = "ml_classification"
JOB_FUNCTION = "jobs.classify.classify_content"
JOB_ID_PREFIX = "classify-content-"

#: attempts per content: the first run and two retries.
MAX_ATTEMPTS = 3
#: seconds before the second and the third attempt.
RETRY_INTERVALS = [5, 30]
#: seconds one job may run; one item takes milliseconds, this covers a slow database.
JOB_TIMEOUT = 20
#: seconds a finished job (and its result) is kept: long enough for ``--wait`` and the dashboard to
#: read it; while kept, the same id is reported as finished instead of being enqueued again.
RESULT_TTL = 10 * 60
#: seconds a failed job stays in the failed registry: the cool-down before a sweep retries the content.
FAILURE_TTL = 24 * 60 * 60

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_id_for(content_id: int) -> str:
    return f"{JOB_ID_PREFIX}{content_id}"


def content_id_of(job_id: str) -> int | None:
    """The content id in a classification job id, or None for any other job."""
    if not job_id.startswith(JOB_ID_PREFIX):
        return None
    suffix = job_id.removeprefix(JOB_ID_PREFIX)
    return int(suffix) if suffix.isdigit() else None


def classification_queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection, default_timeout=JOB_TIMEOUT)


@dataclass
class EnqueueReport:
    """What enqueueing did for each content id."""

    enqueued: list[int] = field(default_factory=list)
    #: waiting, running or scheduled for a retry already: not enqueued twice.
    already_pending: list[int] = field(default_factory=list)
    #: finished within RESULT_TTL: nothing to do.
    recently_finished: list[int] = field(default_factory=list)
    #: failed within FAILURE_TTL: left in the failed registry until the cool-down ends.
    cooling_down: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"enqueued {len(self.enqueued)}, already waiting or running {len(self.already_pending)}, "
            f"finished in the last {RESULT_TTL // 60} min {len(self.recently_finished)}, "
            f"failed in the last {FAILURE_TTL // 3600} h (cooling down) {len(self.cooling_down)}"
        )

    @property
    def job_ids(self) -> list[str]:
        """Every job that stands for the requested ids, new or existing."""
        ids = self.enqueued + self.already_pending + self.recently_finished + self.cooling_down
        return [job_id_for(content_id) for content_id in ids]


def enqueue_ids(queue: Queue, content_ids: Iterable[int]) -> EnqueueReport:
    """Enqueue one job per content id, atomically unique: an id whose job exists is reported, not doubled."""
    report = EnqueueReport()
    for content_id in dict.fromkeys(content_ids):
        getattr(report, _enqueue_one(queue, content_id)).append(content_id)
    return report


def _enqueue_one(queue: Queue, content_id: int) -> str:
    """Enqueue ``content_id``'s job; return the EnqueueReport list it belongs in."""
    while True:
        try:
            queue.enqueue(
                JOB_FUNCTION,
                content_id,
                job_id=job_id_for(content_id),
                unique=True,
                retry=Retry(max=MAX_ATTEMPTS - 1, interval=RETRY_INTERVALS),
                job_timeout=JOB_TIMEOUT,
                result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL,
                description=f"classify content {content_id}",
            )
            return "enqueued"
        except DuplicateJobError:
            try:
                status = Job(job_id_for(content_id), connection=queue.connection).get_status(refresh=True)
            except (NoSuchJobError, InvalidJobOperation):
                continue  # it expired between the two calls: enqueue again
        if status in _PENDING:
            return "already_pending"
        if status == JobStatus.FAILED:
            return "cooling_down"
        return "recently_finished"  # finished, stopped or canceled
