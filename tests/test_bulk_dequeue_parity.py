"""jobs.rq_seam.dequeue_ready against RQ's own ``Queue.dequeue_any`` called once a job, on fakeredis and on
a real redis-server: the same jobs in the same order, the same queue and intermediate list afterwards,
a job whose hash is gone passed over, and a job RQ cannot restore left for RQ's own dequeue."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import get_version

from jobs.rq_seam import dequeue_ready

FUNCTION = "jobs.classify.classify_content"


@pytest.fixture
def connection(fake_or_real_redis: Redis) -> Redis:
    return fake_or_real_redis


def _queue_with_jobs(connection: Redis, name: str, count: int) -> Queue:
    queue = Queue(name, connection=connection, serializer=JSONSerializer)
    for index in range(count):
        queue.enqueue(FUNCTION, index, "0a1b2c3d4e", job_id=f"{name}-{index}")
    return queue


def _lists(queue: Queue) -> tuple[list[str], list[str]]:
    intermediate = IntermediateQueue.get_intermediate_queue_key(queue.key)
    connection = queue.connection
    return (
        [job_id.decode() for job_id in connection.lrange(queue.key, 0, -1)],
        [job_id.decode() for job_id in connection.lrange(intermediate, 0, -1)],
    )


def _by_rq(queue: Queue, wanted: int) -> list[Job]:
    taken = []
    for _ in range(wanted):
        result = Queue.dequeue_any([queue], None, connection=queue.connection, serializer=JSONSerializer)
        if result is None:
            break
        taken.append(result[0])
    return taken


def _strip(job_ids: list[str]) -> list[str]:
    return [job_id.split("-", 1)[1] for job_id in job_ids]


def _by_bulk(queue: Queue, wanted: int) -> list[Job]:
    """As the worker fills a batch: ask again for what is still missing until nothing comes."""
    taken: list[Job] = []
    while len(taken) < wanted:
        more = [job for job, _ in dequeue_ready(queue, wanted - len(taken), Job)]
        if not more:
            break
        taken.extend(more)
    return taken


def test_the_same_jobs_and_lists_as_rq_one_at_a_time(connection: Redis) -> None:
    rq_queue = _queue_with_jobs(connection, "rq", 7)
    bulk_queue = _queue_with_jobs(connection, "bulk", 7)
    for queue in (rq_queue, bulk_queue):
        connection.delete(Job.key_for(f"{queue.name}-2"))  # its result expired while it waited

    by_rq = _by_rq(rq_queue, 4)
    by_bulk = _by_bulk(bulk_queue, 4)

    assert _strip([job.id for job in by_bulk]) == _strip([job.id for job in by_rq]) == ["0", "1", "3", "4"]
    assert [(job.func_name, job.args, job.origin, job.get_status()) for job in by_bulk] == [
        (job.func_name, job.args, "bulk", job.get_status()) for job in by_rq
    ]
    waiting_rq, intermediate_rq = _lists(rq_queue)
    waiting_bulk, intermediate_bulk = _lists(bulk_queue)
    assert _strip(waiting_bulk) == _strip(waiting_rq) == ["5", "6"]
    # Before Redis 6.2 (fakeredis says 5.0.9) RQ pops without an intermediate list.
    moved = ["0", "1", "2", "3", "4"] if get_version(connection) >= (6, 2, 0) else []
    assert _strip(intermediate_bulk) == _strip(intermediate_rq) == moved
    assert _strip([job.id for job in _by_bulk(bulk_queue, 10)]) == ["5", "6"]
    assert dequeue_ready(bulk_queue, 10, Job) == []


def test_a_job_rq_cannot_restore_goes_back_for_rq_to_meet(connection: Redis) -> None:
    queue = _queue_with_jobs(connection, "q", 5)
    connection.hset(Job.key_for("q-2"), "created_at", "not a date")
    if get_version(connection) < (6, 2, 0):
        # Without an intermediate list RQ pops the job before it fails to read it, and raises: the
        # jobs before it go back to the front, the unreadable one is gone as it is in RQ.
        with pytest.raises(ValueError):
            dequeue_ready(queue, 5, Job)
        assert _lists(queue) == (["q-0", "q-1", "q-3", "q-4"], [])
        return

    taken = dequeue_ready(queue, 5, Job)

    assert [job.id for job, _ in taken] == ["q-0", "q-1"]
    assert _lists(queue) == (["q-2", "q-3", "q-4"], ["q-0", "q-1"])
    with pytest.raises(ValueError):  # what RQ's own dequeue does with it
        Queue.dequeue_any([queue], None, connection=connection, serializer=JSONSerializer)
