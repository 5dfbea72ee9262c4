"""What the queue holds and who works on it, read without side effects.

RQ's own ``registry.count()`` cleans registries as it counts (it may requeue abandoned jobs); these
functions only read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from redis import Redis
from rq import Queue, Worker

from jobs.queue import QUEUE_NAME


@dataclass(frozen=True)
class QueueCounts:
    queued: int
    started: int
    finished: int
    failed: int
    scheduled: int
    deferred: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    state: str
    pid: int | None
    hostname: str
    successful_jobs: int
    failed_jobs: int
    current_jobs: list[str] = field(default_factory=list)


def queue_counts(connection: Redis, queue_name: str = QUEUE_NAME) -> QueueCounts:
    queue = Queue(queue_name, connection=connection)
    return QueueCounts(
        queued=queue.count,
        # The started registry holds one entry per execution ("<job id>:<execution id>").
        started=queue.started_job_registry.get_job_count(cleanup=False),
        finished=queue.finished_job_registry.get_job_count(cleanup=False),
        failed=queue.failed_job_registry.get_job_count(cleanup=False),
        scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False),
        deferred=queue.deferred_job_registry.get_job_count(cleanup=False),
    )


def live_workers(connection: Redis, queue_name: str = QUEUE_NAME) -> list[WorkerInfo]:
    """Workers registered on the queue whose key has not expired, with the jobs they are running.

    RQ's ``Worker.all`` drops a worker that died without unregistering from its lists as it reads them
    (as ``rq info`` does); no job is touched.
    """
    workers = Worker.all(queue=Queue(queue_name, connection=connection))
    return [
        WorkerInfo(
            name=worker.name,
            state=worker.get_state(),
            pid=worker.pid,
            hostname=worker.hostname or "",
            successful_jobs=worker.successful_job_count,
            failed_jobs=worker.failed_job_count,
            current_jobs=sorted(execution.job_id for execution in worker.get_current_executions()),
        )
        for worker in sorted(workers, key=lambda worker: worker.name)
    ]
