"""The classification queue: its name, its job policy, and unique enqueueing of content ids.

A job is ``jobs.classify.classify_content(content_id, database_id)``, serialized as JSON, with the id
``classify-content-<content id>-<database id>``: unique per content *and* database, so that a
reset database or a second database on the same Redis never finds its ids taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now

from config import DEFAULT_QUEUE_NAME, settings
from db.identity import database_id as identity_of
from db.session import describe
from jobs.binding import bind_queue
from jobs.registry import CLASSIFY_FUNCTION, REACT_FUNCTION, RECLASSIFY_FUNCTION, refusal
from jobs.rq_seam import (
    JobCall,
    delete_if_failed,
    delete_if_finished,
    enqueue_unique,
    job_statuses,
    latest_failure,
)
from services.redis_memory import out_of_memory

#: the default queue (``VOLFEFE_QUEUE`` names another).
QUEUE_NAME = DEFAULT_QUEUE_NAME
JOB_FUNCTION = CLASSIFY_FUNCTION
JOB_ID_PREFIX = "classify-content-"
RECLASSIFY_JOB_ID_PREFIX = "reclassify-content-"
REACT_JOB_ID_PREFIX = "react-content-"
#: every job of this project is JSON: a payload can carry data, never code.
SERIALIZER = JSONSerializer

#: attempts per content: the first run and two retries.
MAX_ATTEMPTS = 3
#: seconds before the second and the third attempt.
RETRY_INTERVALS = [5, 30]
#: seconds one job may run alone; a batch of n jobs gets JOB_TIMEOUT + n * BATCH_SECONDS_PER_JOB.
JOB_TIMEOUT = 20
#: seconds a finished job (and its result) is kept: long enough for ``--wait`` and the dashboard.
RESULT_TTL = 10 * 60
#: seconds a failed job stays in the failed registry, the record of what failed and why.
FAILURE_TTL = 24 * 60 * 60
#: seconds before a sweep retries a content whose job failed for any reason but its own (a job
#: timeout, a killed worker, an infrastructure failure judged the post's): minutes, not a day.
SHORT_COOL_DOWN = 10 * 60
#: seconds before a sweep retries a content that failed on its own on every attempt.
POST_FAILURE_COOL_DOWN = FAILURE_TTL
#: the exception a job raises for a failure of the post itself (jobs.classify.ClassificationFailed).
POST_FAILURE_MARKER = "ClassificationFailed"
#: the exception the job itself raises when it must not run here (jobs.classify.JobRefused): run by
#: RQ's own worker, a refused job's failure reads ``jobs.classify.JobRefused: ...``, not ``refused: ...``.
REFUSED_MARKER = "JobRefused"

#: ids per pipelined round trip when enqueueing.
ENQUEUE_CHUNK = 1000

_JOB_ID = re.compile(rf"{JOB_ID_PREFIX}(\d+)-([0-9a-f]+)")
_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_id_for(content_id: int, database_id: str) -> str:
    return f"{JOB_ID_PREFIX}{content_id}-{database_id}"


def reclassify_job_id_for(content_id: int, database_id: str, model: str | None = None) -> str:
    """``reclassify-content-<id>-<database id>`` (every configured model), or ``...-<model>`` (that one)."""
    suffix = f"-{model}" if model else ""
    return f"{RECLASSIFY_JOB_ID_PREFIX}{content_id}-{database_id}{suffix}"


def react_job_id_for(content_id: int, database_id: str) -> str:
    """``react-content-<id>-<database id>``: the market's reaction to the content."""
    return f"{REACT_JOB_ID_PREFIX}{content_id}-{database_id}"


def _report_job_id(content_id: int, report: EnqueueReport) -> str:
    """The id of the job that stands for ``content_id`` in ``report``'s kind of enqueue."""
    if report.react:
        return react_job_id_for(content_id, report.database_id)
    return _job_id(content_id, report.database_id, report.force, report.model)


def _job_id(content_id: int, identity: str, force: bool | None, model: str | None = None) -> str:
    """The classification job's id (``force`` None) or the reclassification's (of ``model``, or of all)."""
    if force is None:
        return job_id_for(content_id, identity)
    return reclassify_job_id_for(content_id, identity, model)


def parse_job_id(job_id: str) -> tuple[int, str] | None:
    """(content id, database id) of a classification job id, or None for any other job."""
    match = _JOB_ID.fullmatch(job_id)
    return (int(match[1]), match[2]) if match else None


def content_id_of(job_id: str) -> int | None:
    """The content id in a classification job id, or None for any other job."""
    parsed = parse_job_id(job_id)
    return parsed[0] if parsed else None


def classification_queue(connection: Redis, name: str | None = None) -> Queue:
    return Queue(
        name or settings().queue_name,
        connection=connection,
        default_timeout=JOB_TIMEOUT,
        serializer=SERIALIZER,
    )


@dataclass
class EnqueueReport:
    """What enqueueing did for each content id."""

    database_id: str = ""
    #: the requested ids, in order, once each.
    content_ids: list[int] = field(default_factory=list)
    enqueued: list[int] = field(default_factory=list)
    #: waiting, running or scheduled for a retry already: not enqueued twice.
    already_pending: list[int] = field(default_factory=list)
    #: finished within RESULT_TTL: nothing to do.
    recently_finished: list[int] = field(default_factory=list)
    #: failed, and still within the cool-down that fits the failure.
    cooling_down: list[int] = field(default_factory=list)
    #: among ``enqueued``: contents whose failed (or refused) job was replaced by a new one.
    retried_after_failure: list[int] = field(default_factory=list)
    #: True when the database has just said that every id lacks a configured model's classification (a
    #: sweep): a finished job of such an id ended without it (a worker with fewer models configured, or
    #: before a model was added), so it is replaced by a new job instead of counting as finished.
    lacking: bool = False
    #: among ``enqueued``: contents whose finished job was replaced (see ``lacking``).
    rerun_after_finish: list[int] = field(default_factory=list)
    #: reaction jobs (``jobs.react.react_content``) instead of classification jobs.
    react: bool = False
    #: None for classification jobs; for reclassification jobs, whether they replace even a
    #: classification made by the worker's own model version.
    force: bool | None = None
    #: reclassification jobs: the one model they redo (None: every configured model).
    model: str | None = None
    #: why enqueueing stopped before the end (Redis refused writes: out of memory), else None; the
    #: ids after ``enqueued`` and the others listed above were not enqueued.
    stopped: str | None = None

    def describe(self) -> str:
        notes = []
        if self.retried_after_failure:
            notes.append(f"{len(self.retried_after_failure)} retried after a failure")
        if self.rerun_after_finish:
            why = "new prices" if self.react else "a job that ended lacking a model"
            notes.append(f"{len(self.rerun_after_finish)} again after {why}")
        retried = f" (of which {'; '.join(notes)})" if notes else ""
        return (
            f"enqueued {len(self.enqueued)}{retried}, "
            f"already waiting or running {len(self.already_pending)}, "
            f"finished in the last {RESULT_TTL // 60} min {len(self.recently_finished)}, "
            f"failed and cooling down {len(self.cooling_down)}"
            + (", then stopped: Redis is out of memory" if self.stopped else "")
        )

    @property
    def job_ids(self) -> list[str]:
        """Every job that stands for the requested ids, new or existing."""
        return [_report_job_id(content_id, self) for content_id in self.content_ids]


def enqueue_ids(
    connection: Redis, database_url: str, content_ids: Iterable[int], queue_name: str | None = None
) -> EnqueueReport:
    """Enqueue one job per content id of the database at ``database_url``, atomically unique.

    The queue is bound to this database first (QueueInUse when another database is at work on it).
    Jobs go in chunks of ENQUEUE_CHUNK, each job checked and saved atomically (RQ's own unique-enqueue
    script), so racing enqueuers and sweeps still make one job per id. An id whose job exists is
    reported, never doubled; one whose job failed is enqueued again once the failure's cool-down has
    passed (at once when the job was refused or was not ours).
    """
    return _enqueue_all(connection, database_url, [list(dict.fromkeys(content_ids))], queue_name, None)


def enqueue_id_pages(
    connection: Redis, database_url: str, pages: Iterable[list[int]], queue_name: str | None = None
) -> EnqueueReport:
    """``enqueue_ids`` for ids that arrive a page at a time (the sweep's keyset pages, no id twice):
    each page is enqueued as it arrives, so the first jobs wait in Redis before the last ids are read.

    The ids are those the database says lack a configured model's classification: a finished job of
    one of them is replaced by a new one (``EnqueueReport.lacking``)."""
    return _enqueue_all(connection, database_url, pages, queue_name, None, lacking=True)


def enqueue_reclassifications(
    connection: Redis,
    database_url: str,
    content_ids: Iterable[int],
    force: bool = False,
    queue_name: str | None = None,
    model: str | None = None,
) -> EnqueueReport:
    """Enqueue one reclassification job per content id (``reclassify-content-<id>-<database id>``, or
    ``...-<model>`` to redo that model only).

    The same queue, workers, uniqueness, retries and cool-downs as classification jobs; the worker
    replaces each content's classifications in one transaction, keeping the old ones in history.
    """
    pages = [list(dict.fromkeys(content_ids))]
    return _enqueue_all(connection, database_url, pages, queue_name, force, model)


def enqueue_reactions(
    connection: Redis,
    database_url: str,
    content_ids: Iterable[int],
    queue_name: str | None = None,
    again: bool = False,
) -> EnqueueReport:
    """Enqueue one reaction job per content id (``react-content-<id>-<database id>``): unique, retried
    and cooled down like classification jobs. ``again``: a finished one is replaced (prices arrived
    since it ran), else it counts as finished."""
    pages = [list(dict.fromkeys(content_ids))]
    return _enqueue_all(connection, database_url, pages, queue_name, None, lacking=again, react=True)


def _enqueue_all(
    connection: Redis,
    database_url: str,
    pages: Iterable[list[int]],
    queue_name: str | None,
    force: bool | None,
    model: str | None = None,
    lacking: bool = False,
    react: bool = False,
) -> EnqueueReport:
    identity = identity_of(database_url)
    queue = classification_queue(connection, queue_name)
    bind_queue(connection, queue.name, identity, describe(database_url))
    report = EnqueueReport(database_id=identity, force=force, model=model, lacking=lacking, react=react)
    try:
        for page in pages:
            report.content_ids.extend(page)
            for start in range(0, len(page), ENQUEUE_CHUNK):
                _enqueue_chunk(queue, page[start : start + ENQUEUE_CHUNK], identity, report)
    except ResponseError as error:
        # maxmemory with noeviction: Redis refuses each write from now on. A chunk's jobs are saved by
        # one script, which Redis refuses at its first write or runs whole: what the report lists as
        # enqueued is exactly what is in Redis.
        report.stopped = out_of_memory(error)
        if report.stopped is None:
            raise
    return report


def _arguments(content_id: int, identity: str, force: bool | None, model: str | None) -> tuple:
    if force is None:  # a classification or a reaction
        return (content_id, identity)
    return (content_id, identity, force, model) if model else (content_id, identity, force)


def _template_job(queue: Queue, identity: str, report: EnqueueReport) -> Job:
    """The options every job of one enqueue shares (RQ's ``create_job``); each job's own id, args and
    description come from ``_call``."""
    force, model = report.force, report.model
    function = REACT_FUNCTION if report.react else JOB_FUNCTION if force is None else RECLASSIFY_FUNCTION
    return queue.create_job(
        function,
        args=_arguments(0, identity, force, model),
        retry=Retry(max=MAX_ATTEMPTS - 1, interval=RETRY_INTERVALS),
        timeout=JOB_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
    )


def _call(content_id: int, identity: str, report: EnqueueReport) -> JobCall:
    force, model = report.force, report.model
    if report.react:
        description = f"the market's reaction to content {content_id}"
    elif force is None:
        description = f"classify content {content_id}"
    else:
        description = f"reclassify content {content_id}" + (f" with {model}" if model else "")
    return JobCall(
        _report_job_id(content_id, report),
        _arguments(content_id, identity, force, model),
        description,
    )


def _statuses(queue: Queue, content_ids: list[int], identity: str, report: EnqueueReport) -> list[str | None]:
    """The status of each content's job (None: no job), in one round trip."""
    return job_statuses(
        queue.connection,
        [_report_job_id(content_id, report) for content_id in content_ids],
    )


def _enqueue_chunk(queue: Queue, content_ids: list[int], identity: str, report: EnqueueReport) -> None:
    """Enqueue a chunk; sort each id into the report's lists by what became of it.

    Ids whose job exists are recognised in bulk first (a second sweep of a waiting backlog builds no
    job); the rest are enqueued with the atomic unique script, and any that lost a race to another
    enqueuer are looked at again.
    """
    pending = content_ids
    while pending:
        statuses = _statuses(queue, pending, identity, report)
        missing = [content_id for content_id, status in zip(pending, statuses, strict=True) if status is None]
        retry: list[int] = []
        if missing:
            enqueued = enqueue_unique(
                queue,
                _template_job(queue, identity, report),
                [_call(content_id, identity, report) for content_id in missing],
            )
            report.enqueued.extend(content_id for content_id, ok in zip(missing, enqueued, strict=True) if ok)
            retry = [content_id for content_id, ok in zip(missing, enqueued, strict=True) if not ok]
        for content_id, status in zip(pending, statuses, strict=True):
            if status is None:
                continue
            if status == JobStatus.FAILED.value:
                replaced = _replace_failed(queue, _report_job_id(content_id, report))
                if replaced is None:
                    report.cooling_down.append(content_id)
                    continue
                if replaced:
                    report.retried_after_failure.append(content_id)
                retry.append(content_id)
            elif JobStatus(status) in _PENDING:
                report.already_pending.append(content_id)
            elif (
                status == JobStatus.FINISHED.value
                and report.lacking
                and _replace_finished(queue, _report_job_id(content_id, report))
            ):
                report.rerun_after_finish.append(content_id)
                retry.append(content_id)
            else:
                report.recently_finished.append(content_id)  # finished, stopped or canceled
        pending = retry


def _replace_finished(queue: Queue, job_id: str) -> bool:
    """Delete the content's finished job (if still finished); True when it was deleted or is gone."""
    try:
        existing = Job.fetch(job_id, queue.connection, SERIALIZER)
    except NoSuchJobError:
        return True  # expired meanwhile: enqueue anew
    return delete_if_finished(queue.connection, existing)


def _replace_failed(queue: Queue, job_id: str) -> bool | None:
    """Make room for a new job in place of the content's failed one, once its cool-down has passed.

    True when the failed job was deleted, False when it was gone already, None while it cools down.
    """
    try:
        existing = Job.fetch(job_id, queue.connection, SERIALIZER)
    except NoSuchJobError:
        return False
    if _cooled_down(existing) and delete_if_failed(queue.connection, existing):
        return True
    return None


def failure_cool_down(job: Job) -> int:
    """Seconds before a sweep may retry the content of a failed ``job``.

    0 for a job that was refused or is not ours (someone pushed it under our id); a day for a post
    that failed on its own; minutes for anything else (timeouts, killed workers, misjudged outages).
    """
    if refusal(job) is not None or job.func_name not in (JOB_FUNCTION, RECLASSIFY_FUNCTION, REACT_FUNCTION):
        return 0
    last = latest_failure(job)
    if last.startswith("refused:") or REFUSED_MARKER in last.split(":", 1)[0]:
        return 0
    return POST_FAILURE_COOL_DOWN if POST_FAILURE_MARKER in last.split(":", 1)[0] else SHORT_COOL_DOWN


def _cooled_down(job: Job) -> bool:
    cool_down = failure_cool_down(job)
    if cool_down == 0:
        return True
    result = job.latest_result()
    failed_at = result.created_at if result is not None else job.ended_at
    return failed_at is None or (now() - failed_at).total_seconds() >= cool_down
