"""What the queue holds and who works on it, read without side effects.

RQ's own ``registry.count()`` cleans registries as it counts (it may requeue abandoned jobs); these
functions only read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from redis import Redis
from rq import Queue
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

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
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.llen(queue.key)
        # The started registry holds one entry per execution ("<job id>:<execution id>").
        pipeline.zcard(queue.started_job_registry.key)
        for registry in (queue.finished_job_registry, queue.failed_job_registry):
            pipeline.zcard(registry.key)
        pipeline.zcard(queue.scheduled_job_registry.key)
        pipeline.zcard(queue.deferred_job_registry.key)
        queued, started, finished, failed, scheduled, deferred = pipeline.execute()
    return QueueCounts(queued, started, finished, failed, scheduled, deferred)


def live_workers(connection: Redis, queue_name: str = QUEUE_NAME) -> list[WorkerInfo]:
    """Workers registered on the queue whose key has not expired, with the jobs they are running."""
    keys = sorted(key.decode() for key in connection.smembers(WORKERS_BY_QUEUE_KEY % queue_name))
    with connection.pipeline(transaction=False) as pipeline:
        for key in keys:
            pipeline.hgetall(key)
            pipeline.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(key.removeprefix("rq:worker:")))
        replies = pipeline.execute()
    workers = []
    for key, data, executions in zip(keys, replies[::2], replies[1::2], strict=True):
        if not data:
            continue  # expired: the worker died without unregistering
        fields = {name.decode(): value.decode() for name, value in data.items()}
        workers.append(
            WorkerInfo(
                name=key.removeprefix("rq:worker:"),
                state=fields.get("state", "?"),
                pid=int(fields["pid"]) if fields.get("pid") else None,
                hostname=fields.get("hostname", ""),
                successful_jobs=int(fields.get("successful_job_count") or 0),
                failed_jobs=int(fields.get("failed_job_count") or 0),
                current_jobs=sorted(member.decode().rsplit(":", 1)[0] for member in executions),
            )
        )
    return workers
