"""jobs.rq_seam.enqueue_unique and job_statuses against RQ's own ``Queue.enqueue_job``, on fakeredis and
on a real redis-server: the same hash per job (but its instants), the same queue, TTLs and registries,
the same refusal of an id that exists, and the same job as RQ reads it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from jobs.rq_seam import STATUSES_PER_CALL, JobCall, enqueue_unique, job_statuses
from services.redis_server import RedisServer

#: fields RQ sets from the clock at enqueue: equal in form, not in value.
INSTANTS = {b"created_at", b"enqueued_at"}
FUNCTION = "jobs.classify.classify_content"
DATABASE = "0a1b2c3d4e"


@pytest.fixture
def connection(fake_or_real_redis: Redis) -> Redis:
    return fake_or_real_redis


def _options(ttl: int | None = None) -> dict:
    return {
        "retry": Retry(max=2, interval=[5, 30]),
        "timeout": 20,
        "result_ttl": 600,
        "failure_ttl": 86400,
        "ttl": ttl,
    }


def _rq_enqueue(queue: Queue, content_id: int, ttl: int | None = None) -> Job:
    """What RQ's documented API does for one job."""
    job = queue.create_job(
        FUNCTION,
        args=(content_id, DATABASE),
        job_id=f"rq-{content_id}",
        description=f"classify content {content_id}",
        **_options(ttl),
    )
    return queue.enqueue_job(job, unique=True)


def _bulk_enqueue(queue: Queue, content_ids: list[int], ttl: int | None = None) -> list[bool]:
    template = queue.create_job(FUNCTION, args=(0, DATABASE), **_options(ttl))
    calls = [
        JobCall(f"bulk-{content_id}", (content_id, DATABASE), f"classify content {content_id}")
        for content_id in content_ids
    ]
    return enqueue_unique(queue, template, calls)


def _hash_without_instants(connection: Redis, job_id: str) -> dict[bytes, bytes]:
    return {
        name: value for name, value in connection.hgetall(Job.key_for(job_id)).items() if name not in INSTANTS
    }


@pytest.mark.parametrize("ttl", [None, 3600])
def test_each_job_is_stored_as_rq_stores_it(connection: Redis, ttl: int | None) -> None:
    queue = Queue("parity", connection=connection, serializer=JSONSerializer)
    for content_id in (7, 8):
        _rq_enqueue(queue, content_id, ttl)

    assert _bulk_enqueue(queue, [7, 8], ttl) == [True, True]

    for content_id in (7, 8):
        by_rq = _hash_without_instants(connection, f"rq-{content_id}")
        by_bulk = _hash_without_instants(connection, f"bulk-{content_id}")
        assert by_bulk == by_rq
        stored = connection.hgetall(Job.key_for(f"bulk-{content_id}"))
        assert set(stored) >= INSTANTS
        assert connection.ttl(Job.key_for(f"bulk-{content_id}")) == connection.ttl(
            Job.key_for(f"rq-{content_id}")
        )
    assert queue.job_ids == ["rq-7", "rq-8", "bulk-7", "bulk-8"]
    assert connection.smembers("rq:queues") == {queue.key.encode()}
    job = Job.fetch("bulk-8", connection=connection, serializer=JSONSerializer)
    assert (job.func_name, job.args, job.kwargs) == (FUNCTION, [8, DATABASE], {})
    assert job.get_status() == JobStatus.QUEUED
    assert (job.retries_left, job.retry_intervals, job.timeout) == (2, [5, 30], 20)
    assert (job.result_ttl, job.failure_ttl, job.origin) == (600, 86400, "parity")


def test_an_existing_id_is_refused_and_left_as_it_was(connection: Redis) -> None:
    queue = Queue("parity", connection=connection, serializer=JSONSerializer)
    assert _bulk_enqueue(queue, [1, 2]) == [True, True]
    connection.hset(Job.key_for("bulk-2"), "status", "started")
    before = connection.hgetall(Job.key_for("bulk-2"))

    assert _bulk_enqueue(queue, [2, 3, 1, 4]) == [False, True, False, True]

    assert connection.hgetall(Job.key_for("bulk-2")) == before
    assert queue.job_ids == ["bulk-1", "bulk-2", "bulk-3", "bulk-4"]
    _rq_enqueue(queue, 5)
    with pytest.raises(DuplicateJobError):  # RQ refuses the same way
        _rq_enqueue(queue, 5)


def test_statuses_read_as_rq_reads_them_across_calls(connection: Redis) -> None:
    queue = Queue("parity", connection=connection, serializer=JSONSerializer)
    ids = list(range(STATUSES_PER_CALL + 3))
    assert all(_bulk_enqueue(queue, ids))
    Job.fetch("bulk-1", connection=connection, serializer=JSONSerializer).set_status(JobStatus.FAILED)
    connection.hdel(Job.key_for("bulk-2"), "status")
    job_ids = ["bulk-1", "bulk-2", "missing", *(f"bulk-{i}" for i in ids[3:])]

    statuses = job_statuses(connection, job_ids)

    assert statuses[:3] == ["failed", None, None]
    assert statuses[3:] == ["queued"] * (len(ids) - 3)
    last = Job.fetch(f"bulk-{ids[-1]}", connection=connection, serializer=JSONSerializer)
    assert statuses[-1] == last.get_status(refresh=True).value
    assert job_statuses(connection, []) == []


def test_a_template_with_keyword_arguments_is_refused(connection: Redis) -> None:
    queue = Queue("parity", connection=connection, serializer=JSONSerializer)
    template = queue.create_job(FUNCTION, args=(0,), kwargs={"force": True})
    with pytest.raises(ValueError, match="positional"):
        enqueue_unique(queue, template, [JobCall("x", (1,), "x")])
    assert queue.job_ids == []


def test_the_remains_of_a_lost_job_count_as_no_job_and_are_replaced(connection: Redis) -> None:
    """What a worker's replayed writes leave in a Redis that lost the job (jobs/rq_seam.py, "A job's remains"):
    RQ cannot restore it, so it is no job; the enqueue replaces it with the whole job."""
    queue = Queue("parity", connection=connection, serializer=JSONSerializer)
    remains = {"status": "started", "worker_name": "w1", "started_at": "2026-12-06T10:00:00.000000Z"}
    connection.hset(Job.key_for("bulk-3"), mapping=remains)
    with pytest.raises(NoSuchJobError):
        Job.fetch("bulk-3", connection=connection, serializer=JSONSerializer)
    assert job_statuses(connection, ["bulk-3"]) == [None]
    _rq_enqueue(queue, 3)

    assert _bulk_enqueue(queue, [3]) == [True]

    assert _hash_without_instants(connection, "bulk-3") == _hash_without_instants(connection, "rq-3")
    assert job_statuses(connection, ["bulk-3"]) == ["queued"]
    assert queue.job_ids == ["rq-3", "bulk-3"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Redis]:
    """A redis-server of this test's own (its maxmemory is changed)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def test_a_chunk_refused_for_memory_saves_nothing(private_redis: Redis) -> None:
    """Over maxmemory (noeviction) a chunk is saved whole or not at all, so the enqueuer's count is
    true. With the queue's SADD beside the script (as RQ sends it), the SADD of the chunk after the
    limit was refused while the script still saved all 1,000 jobs: reported as not enqueued."""
    queue = Queue("parity", connection=private_redis, serializer=JSONSerializer)
    used = int(private_redis.info("memory")["used_memory"])
    private_redis.config_set("maxmemory-policy", "noeviction")
    private_redis.config_set("maxmemory", str(used + 20_000))  # less than a chunk of 1,000 jobs
    reported: list[str] = []

    with pytest.raises(ResponseError, match="used memory > 'maxmemory'"):
        for chunk in range(10):
            ids = list(range(chunk * 1000, (chunk + 1) * 1000))
            saved = _bulk_enqueue(queue, ids)
            reported.extend(f"bulk-{content_id}" for content_id, ok in zip(ids, saved, strict=True) if ok)

    in_redis = sorted(key.decode().removeprefix("rq:job:") for key in private_redis.keys("rq:job:*"))
    assert in_redis == sorted(reported)
    assert sorted(queue.job_ids) == sorted(reported)
    private_redis.config_set("maxmemory", "0")
    assert all(_bulk_enqueue(queue, list(range(10_000, 10_100))))
    assert private_redis.smembers("rq:queues") == {queue.key.encode()}
