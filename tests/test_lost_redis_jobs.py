"""A batch a worker holds when Redis loses its jobs (a redis-server without persistence restarted
empty): the worker holds the only copy, and what it writes back must be whole jobs that RQ can run,
on fakeredis and on a real redis-server."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from jobs.rq_seam import dequeue_ready, hand_back, start_executions

FUNCTION = "jobs.classify.classify_content"
DATABASE = "0a1b2c3d4e"


@pytest.fixture
def connection(fake_or_real_redis: Redis) -> Redis:
    return fake_or_real_redis


def _started_batch(connection: Redis, count: int) -> tuple[Queue, SimpleWorker, list]:
    queue = Queue("lost", connection=connection, serializer=JSONSerializer)
    for index in range(count):
        queue.enqueue(
            FUNCTION, index, DATABASE, job_id=f"lost-{index}", description=f"classify content {index}"
        )
    worker = SimpleWorker([queue], connection=connection, serializer=JSONSerializer)
    taken = dequeue_ready(queue, count, Job)
    executions = start_executions(worker, taken, 60)
    return queue, worker, [(job, queue, executions[job.id]) for job, queue in taken]


def _dequeue_all_as_rq(queue: Queue) -> list[Job]:
    jobs = []
    while result := Queue.dequeue_any([queue], None, connection=queue.connection, serializer=JSONSerializer):
        jobs.append(result[0])
    return jobs


def test_a_batch_handed_back_after_redis_lost_it_comes_back_whole(connection: Redis) -> None:
    queue, worker, batch = _started_batch(connection, 3)
    connection.flushall()

    hand_back(worker, batch)

    back = _dequeue_all_as_rq(queue)
    assert [(job.id, job.func_name, job.args, job.description) for job in back] == [
        (f"lost-{index}", FUNCTION, [index, DATABASE], f"classify content {index}") for index in range(3)
    ]
    assert [job.get_status() for job in back] == [JobStatus.QUEUED] * 3
    assert queue.started_job_registry.get_job_ids() == []


def test_a_batch_handed_back_is_queued_as_rq_requeues_it(connection: Redis) -> None:
    queue, worker, batch = _started_batch(connection, 2)

    hand_back(worker, batch)

    assert queue.job_ids == ["lost-0", "lost-1"]
    assert queue.started_job_registry.get_job_ids() == []
    for job, _queue, _execution in batch:
        stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
        assert stored.get_status() == JobStatus.QUEUED
        assert (stored.worker_name, stored.started_at, stored.ended_at) == (None, None, None)
        assert stored.enqueued_at is not None and stored.args == job.args
        assert connection.ttl(job.key) == -1
