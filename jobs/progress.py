"""Waiting for jobs to finish, with a progress bar, and the summary of what they did."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis
from rq.job import Job, JobStatus
from tqdm import tqdm

from jobs.outcomes import CLASSIFIED, SKIPPED
from jobs.queue import content_id_of

#: seconds between two looks at the jobs' statuses.
POLL_INTERVAL = 0.25
_FINAL = {JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value}


@dataclass
class RunSummary:
    total: int = 0
    classified: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: dict[int, str] = field(default_factory=dict)
    sentiments: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        lines = [
            f"total {self.total}, classified {self.classified}, skipped {sum(self.skipped.values())}, "
            f"failed {len(self.failed)} in {self.elapsed:.1f}s ({self.items_per_second:.1f} items/s)"
        ]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {reason}: {count}")
        if self.sentiments:
            lines.append("  sentiments: " + ", ".join(f"{k} {v}" for k, v in sorted(self.sentiments.items())))
        for content_id, error in sorted(self.failed.items()):
            lines.append(f"  failed content {content_id}: {error}")
        return lines


def _statuses(connection: Redis, job_ids: list[str]) -> list[str | None]:
    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hget(Job.key_for(job_id), "status")
        return [status.decode() if status else None for status in pipeline.execute()]


def wait_for_jobs(
    connection: Redis,
    job_ids: list[str],
    show_progress: bool = True,
    check: Callable[[], None] | None = None,
) -> float:
    """Block until every job is final (or gone); return the seconds waited.

    ``check`` is called at every poll and may raise to stop waiting (say, when no worker is left).
    """
    started = time.monotonic()
    pending = list(job_ids)
    with tqdm(total=len(job_ids), unit="item", disable=not show_progress, dynamic_ncols=True) as bar:
        while pending:
            statuses = _statuses(connection, pending)
            still = [
                job_id
                for job_id, status in zip(pending, statuses, strict=True)
                if status not in _FINAL and status
            ]
            bar.update(len(pending) - len(still))
            pending = still
            if pending:
                if check is not None:
                    check()
                time.sleep(POLL_INTERVAL)
    return time.monotonic() - started


def summarize(connection: Redis, job_ids: list[str], elapsed: float) -> RunSummary:
    """What the jobs did, from their results in Redis."""
    summary = RunSummary(total=len(job_ids), elapsed=elapsed)
    for job in Job.fetch_many(job_ids, connection=connection):
        if job is None:
            continue
        content_id = content_id_of(job.id)
        status = job.get_status(refresh=False)
        if status == JobStatus.FAILED:
            result = job.latest_result()
            error = (result.exc_string or "").strip().splitlines() if result else []
            summary.failed[content_id or -1] = error[-1] if error else "failed"
            continue
        value = job.return_value() if status == JobStatus.FINISHED else None
        if not isinstance(value, dict):
            continue
        if value.get("status") == CLASSIFIED:
            summary.classified += 1
            summary.sentiments[value.get("sentiment", "?")] += 1
        elif value.get("status") == SKIPPED:
            summary.skipped[value.get("reason", "?")] += 1
    return summary
