"""Waiting for jobs to end, with progress, and the summary of what this database now records for them.

The wait says when no worker listens on the queue (and keeps waiting, or stops at a timeout). The
summary counts only what it verified in this database: a content is classified when it has a
classification by every configured model, skipped when it has a skip reason or does not exist, failed when its job is in
RQ's failed state (with the failure's cause in one line), and still waiting otherwise.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from tqdm import tqdm

from config import DEFAULT_MODEL_NAME
from db.queries import content_outcomes, reaction_statuses
from db.session import session_scope
from jobs.outcomes import CONTENT_NOT_FOUND
from jobs.queue import SERIALIZER, EnqueueReport
from jobs.rq_seam import job_statuses
from model.model_marks import has_random_weights, random_weights_warning

#: seconds between two looks at the jobs' statuses.
POLL_INTERVAL = 0.25
#: seconds between two looks for a worker listening on the queue.
WORKER_CHECK_INTERVAL = 2.0
#: seconds between two progress lines when standard error is not a terminal (no progress bar).
PROGRESS_LINE_INTERVAL = 10.0
_ENDED = {JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value}
#: the last line of a traceback: ``package.module.ErrorType: message`` (frames are indented).
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*): (.+)$")
#: exceptions whose message is the whole cause (our jobs' own failures): shown without their name.
_CAUSE_ONLY = {"ClassificationFailed", "InfrastructureUnavailable", "JobRefused"}
#: the wrapper SQLAlchemy and others put before the driver's message: ``(psycopg.OperationalError) ...``.
_DRIVER_PREFIX = re.compile(r"^\((?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\) ")


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended."""

    elapsed: float
    #: jobs still waiting or running when the wait stopped (at its timeout).
    unfinished: list[str] = field(default_factory=list)
    #: the timeout, when the wait stopped at it.
    timed_out_after: float | None = None


def _still_running(connection: Redis, job_ids: Sequence[str]) -> list[str]:
    """The jobs among ``job_ids`` that have not ended (a job gone from Redis has ended)."""
    statuses = job_statuses(connection, job_ids)
    return [
        job_id for job_id, status in zip(job_ids, statuses, strict=True) if status and status not in _ENDED
    ]


def listening_workers(connection: Redis, queue_name: str) -> int:
    """Live workers listening on ``queue_name`` (RQ's ``Worker.all`` drops those whose key expired)."""
    return len(Worker.all(queue=Queue(queue_name, connection=connection)))


def no_worker_message(queue_name: str) -> str:
    return (
        f"no worker is listening on queue {queue_name}: start one with "
        f"`rq worker {queue_name} -w workers.FinbertWorker --with-scheduler` "
        "(after `source scripts/activate`); still waiting, Ctrl-C to stop"
    )


class _WorkerWatch:
    """Looks for a worker listening on the queue every WORKER_CHECK_INTERVAL; says when there is none,
    and again when one appears."""

    def __init__(self, connection: Redis, queue_name: str, say: Callable[[str], None]) -> None:
        self.connection, self.queue_name, self.say = connection, queue_name, say
        self.next_look = 0.0
        self.listening: bool | None = None

    def look(self, now: float) -> None:
        if now < self.next_look:
            return
        self.next_look = now + WORKER_CHECK_INTERVAL
        listening = listening_workers(self.connection, self.queue_name) > 0
        if not listening and self.listening is not False:
            self.say(no_worker_message(self.queue_name))
        elif listening and self.listening is False:
            self.say(f"a worker listens on {self.queue_name} now")
        self.listening = listening


def wait_for_jobs(
    connection: Redis,
    job_ids: Sequence[str],
    queue_name: str,
    *,
    show_progress: bool = True,
    timeout: float | None = None,
    check: Callable[[], None] | None = None,
    out: TextIO | None = None,
) -> WaitResult:
    """Block until every job has ended (or is gone), or ``timeout`` seconds have passed.

    Every WORKER_CHECK_INTERVAL it looks for a worker listening on ``queue_name`` and says so on ``out``
    (default stderr) when there is none, and again when one appears. With ``show_progress`` a progress
    bar is drawn, else a progress line is written every PROGRESS_LINE_INTERVAL. ``check`` is called at
    every poll and may raise to stop waiting (say, when the workers it started have died).
    """
    out = out or sys.stderr
    started = time.monotonic()
    pending = _still_running(connection, job_ids)
    next_line = started + PROGRESS_LINE_INTERVAL
    with tqdm(
        total=len(job_ids), initial=len(job_ids) - len(pending), unit="item",
        disable=not show_progress, dynamic_ncols=True, file=out,
    ) as bar:  # fmt: skip

        def say(line: str) -> None:
            if show_progress:
                bar.write(line, file=out)
            else:
                print(line, file=out, flush=True)

        workers = _WorkerWatch(connection, queue_name, say)
        while pending:
            now = time.monotonic()
            if timeout is not None and now - started >= timeout:
                break
            workers.look(now)
            if not show_progress and now >= next_line:
                ended = len(job_ids) - len(pending)
                say(f"waiting: {ended} of {len(job_ids)} jobs ended, {len(pending)} waiting or running")
                next_line = now + PROGRESS_LINE_INTERVAL
            if check is not None:
                check()
            time.sleep(POLL_INTERVAL)
            still = _still_running(connection, pending)
            bar.update(len(pending) - len(still))
            pending = still
    return WaitResult(
        elapsed=time.monotonic() - started,
        unfinished=pending,
        timed_out_after=timeout if pending else None,
    )


def failure_cause(exc_string: str | None) -> str:
    """The cause of a failure in one line, from its traceback text: the last exception line without
    the exception's module path (and without the name of our own job errors, whose message is the cause)."""
    for line in reversed((exc_string or "").strip().splitlines()):
        match = _EXCEPTION_LINE.match(line.rstrip())
        if match is None:
            continue  # SQLAlchemy's "[SQL: ...]" and "(Background on this error at: ...)" lines, say
        name, message = match.group(1), match.group(2).strip()
        driver = _DRIVER_PREFIX.match(message)
        if driver:  # "(psycopg.OperationalError) connection failed": the driver's error is the cause
            name, message = driver.group(1), message[driver.end() :]
        return message if name in _CAUSE_ONLY else f"{name}: {message}"
    return "failed (no error recorded)"


@dataclass
class RunSummary:
    """What this database records for the requested contents, and how the wait went."""

    total: int = 0
    classified: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: content id -> cause: its job failed, or ended (stopped, canceled, expired) with nothing recorded.
    failed: dict[int, str] = field(default_factory=dict)
    #: contents neither classified, skipped nor failed: their jobs had not ended.
    waiting: list[int] = field(default_factory=list)
    sentiments: Counter[str] = field(default_factory=Counter)
    #: classifications among ``classified`` made by a model with random weights.
    random_weights: int = 0
    elapsed: float = 0.0
    #: contents whose job was waiting or running when enqueued and has ended since: the rate is theirs.
    processed: int = 0
    #: seconds after which the wait gave up, when it did.
    timed_out_after: float | None = None

    @property
    def items_per_second(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def complete(self) -> bool:
        """True when every content was classified or skipped: nothing failed, nothing still waits."""
        return not self.failed and not self.waiting

    def lines(self) -> list[str]:
        waiting = f", waiting {len(self.waiting)}" if self.waiting else ""
        lines = [
            f"total {self.total}, classified {self.classified}, skipped {sum(self.skipped.values())}, "
            f"failed {len(self.failed)}{waiting} in {self.elapsed:.1f}s ({self.items_per_second:.1f} items/s)"
        ]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {reason}: {count}")
        if self.sentiments:
            lines.append("  sentiments: " + ", ".join(f"{k} {v}" for k, v in sorted(self.sentiments.items())))
        for content_id, cause in sorted(self.failed.items()):
            lines.append(f"  failed content {content_id}: {cause}")
        if self.timed_out_after is not None:
            lines.append(
                f"timed out after {self.timed_out_after:g}s: {len(self.waiting)} jobs still waiting or running"
            )
        lines += random_weights_warning(self.random_weights)
        return lines


def summarize(
    connection: Redis,
    database_url: str,
    report: EnqueueReport,
    wait: WaitResult | None = None,
    models: Sequence[str] = (DEFAULT_MODEL_NAME,),
) -> RunSummary:
    """What the database at ``database_url`` records for the contents of ``report``, after ``wait``: a
    content is classified once every one of ``models`` (the configured ones) has classified it, and
    counts under its consensus sentiment.

    Redis is read only for contents with no outcome in the database: failed, or still waiting.
    The rate counts the contents enqueued (or already waiting) by ``report`` that have ended.
    """
    jobs = dict(zip(report.content_ids, report.job_ids, strict=True))
    summary = RunSummary(
        total=len(jobs),
        elapsed=wait.elapsed if wait else 0.0,
        timed_out_after=wait.timed_out_after if wait else None,
    )
    with session_scope(database_url) as session:
        recorded = content_outcomes(session, jobs, models)
    undecided: list[int] = []
    for content_id in jobs:
        outcome = recorded.get(content_id)
        if outcome is None:
            summary.skipped[CONTENT_NOT_FOUND] += 1
        elif outcome.sentiment is not None:
            summary.classified += 1
            summary.sentiments[outcome.sentiment] += 1
            summary.random_weights += any(
                has_random_weights(version) for version in outcome.versions.values()
            )
        elif outcome.skip_reason is not None:
            summary.skipped[outcome.skip_reason] += 1
        else:
            undecided.append(content_id)
    fetched = Job.fetch_many(
        [jobs[content_id] for content_id in undecided], connection, serializer=SERIALIZER
    )
    for content_id, job in zip(undecided, fetched, strict=True):
        status = job.get_status(refresh=False) if job is not None else None
        if status == JobStatus.FAILED:
            result = job.latest_result()
            summary.failed[content_id] = failure_cause(result.exc_string if result else None)
        elif status is None or status.value in _ENDED:  # ended, yet nothing recorded: not done either
            summary.failed[content_id] = (
                f"job {status.value if status else 'gone from Redis'}, nothing recorded"
            )
        else:
            summary.waiting.append(content_id)
    fresh = set(report.enqueued) | set(report.already_pending)
    summary.processed = len(fresh - set(summary.waiting))
    return summary


@dataclass
class ReactionSummary:
    """What this database records for the posts whose reactions were asked for, after a wait."""

    total: int = 0
    #: posts with stored reactions.
    reacted: int = 0
    #: their (asset, window) records by status: ok, incomplete, awaiting_prices, ...
    statuses: Counter[str] = field(default_factory=Counter)
    #: posts whose job finished without storing any (no publication time, content gone), by reason.
    skipped: Counter[str] = field(default_factory=Counter)
    #: content id -> cause: its job failed, or ended with nothing recorded.
    failed: dict[int, str] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    timed_out_after: float | None = None

    @property
    def complete(self) -> bool:
        return not self.failed and not self.waiting

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{status} {count}" for status, count in sorted(self.statuses.items()))
        waiting = f", waiting {len(self.waiting)}" if self.waiting else ""
        lines = [
            f"reactions of {self.total} posts: computed {self.reacted}"
            + (f" ({statuses})" if statuses else "")
            + f", skipped {sum(self.skipped.values())}, failed {len(self.failed)}{waiting} in {self.elapsed:.1f}s"
        ]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {reason}: {count}")
        for content_id, cause in sorted(self.failed.items()):
            lines.append(f"  reaction of content {content_id} failed: {cause}")
        if self.timed_out_after is not None:
            lines.append(
                f"timed out after {self.timed_out_after:g}s: {len(self.waiting)} reaction jobs still waiting"
            )
        return lines


def summarize_reactions(
    connection: Redis, database_url: str, report: EnqueueReport, wait: WaitResult | None = None
) -> ReactionSummary:
    """What the database records for the posts of ``report`` (reaction jobs), after ``wait``: a post
    reacted when it has stored reactions and its job did not fail; skipped when its job finished with a
    reason and stored none; failed (with the cause) when its job failed or ended with nothing stored."""
    jobs = dict(zip(report.content_ids, report.job_ids, strict=True))
    summary = ReactionSummary(
        total=len(jobs),
        elapsed=wait.elapsed if wait else 0.0,
        timed_out_after=wait.timed_out_after if wait else None,
    )
    with session_scope(database_url) as session:
        stored = reaction_statuses(session, jobs)
    fetched = Job.fetch_many(list(jobs.values()), connection, serializer=SERIALIZER)
    for content_id, job in zip(jobs, fetched, strict=True):
        status = job.get_status(refresh=False) if job is not None else None
        if status == JobStatus.FAILED:  # even with reactions stored by an earlier job: not this one's
            result = job.latest_result()
            summary.failed[content_id] = failure_cause(result.exc_string if result else None)
        elif status is not None and status.value not in _ENDED:
            summary.waiting.append(content_id)
        elif content_id in stored:
            summary.reacted += 1
            summary.statuses.update(stored[content_id])
        elif status == JobStatus.FINISHED:
            result = job.latest_result()
            value = result.return_value if result is not None else None
            reason = value.get("reason") if isinstance(value, dict) else None
            if reason:
                summary.skipped[reason] += 1
            else:
                summary.failed[content_id] = "job finished, nothing recorded"
        else:
            summary.failed[content_id] = (
                f"job {status.value if status else 'gone from Redis'}, nothing recorded"
            )
    return summary
