"""The scripts that start and finish a batch (``jobs.rq_seam.start_executions``, ``finish_successes``)
leave every key exactly as RQ's own calls leave it.

Twin keyspaces start from the same jobs; one side runs RQ 3.0's calls job by job (what
``BaseWorker.prepare_job_execution`` and ``handle_job_success`` do, the way this project ran them
before the scripts), the other the scripts. The clock and the execution ids are fixed on both, so
every hash field, score, member, stream entry and TTL can be compared as it is. On fakeredis and on a
real redis-server.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
import rq.utils
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from jobs import rq_seam
from jobs.queue import RESULT_TTL

FUNCTION = "jobs.classify.classify_content"
DATABASE = "0a1b2c3d4e"
QUEUE = "twins"
INSTANT = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
LATER = datetime(2026, 12, 7, 1, 2, 9, 123456, tzinfo=UTC)


@pytest.fixture(params=["fakeredis", "redis-server"])
def twins(request: pytest.FixtureRequest) -> Iterator[tuple[Redis, Redis]]:
    """Two empty keyspaces of the same kind: two fakeredis servers, or databases 0 and 1 of one server."""
    if request.param == "fakeredis":
        pair = (
            fakeredis.FakeRedis(server=fakeredis.FakeServer()),
            fakeredis.FakeRedis(server=fakeredis.FakeServer()),
        )
    else:
        url = request.getfixturevalue("redis_url")  # database 0 (redis://HOST:PORT/0 or unix://SOCKET?db=0)
        pair = (Redis.from_url(url), Redis.from_url(url.removesuffix("0") + "1"))
        assert pair[1].connection_pool.connection_kwargs["db"] == 1
    yield pair
    for connection in pair:
        connection.flushdb()
        connection.close()


class Clock:
    """The instant every clock RQ and the seam read returns, and execution ids counted from zero."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.instant = INSTANT
        self.ids = itertools.count()
        for module in (
            "rq.utils",
            "rq.job",
            "rq.queue",
            "rq.worker.base",
            "rq.executions",
            "rq.registry",
            "rq.results",
            "jobs.rq_seam",
        ):
            monkeypatch.setattr(f"{module}.now", lambda: self.instant)
        for module in ("rq.executions", "jobs.rq_seam"):
            monkeypatch.setattr(f"{module}.uuid4", lambda: uuid.UUID(int=next(self.ids)))

    def restart(self, instant: datetime) -> None:
        self.instant = instant
        self.ids = itertools.count()


def _enqueue(connection: Redis) -> Queue:
    """Jobs as this project enqueues them (``rq_seam.enqueue_unique``) and as RQ's ``Queue.enqueue`` does,
    one of them with a result kept for ever (-1) and one whose result is not kept (0)."""
    queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
    template = queue.create_job(
        FUNCTION, args=(0, DATABASE), retry=Retry(max=2, interval=[1, 5]), timeout=20, result_ttl=RESULT_TTL
    )
    calls = [
        rq_seam.JobCall(f"ours-{index}", (index, DATABASE), f"classify content {index}") for index in range(3)
    ]
    assert rq_seam.enqueue_unique(queue, template, calls) == [True] * 3
    queue.enqueue(FUNCTION, 10, DATABASE, job_id="rq-plain", description="classify content 10")
    queue.enqueue(FUNCTION, 11, DATABASE, job_id="rq-kept", result_ttl=-1, meta={"note": "kept"})
    queue.enqueue(FUNCTION, 12, DATABASE, job_id="rq-unkept", result_ttl=0)
    queue.enqueue(FUNCTION, 13, DATABASE, job_id="rq-expiring", ttl=300)  # until started
    # Sets a job's dependencies and dependents leave (their expiry is part of finishing).
    connection.sadd(Job.dependents_key_for("ours-1"), "child")
    connection.sadd(Job(id="ours-2", connection=connection).dependencies_key, "parent")
    return queue


def _worker(queue: Queue) -> SimpleWorker:
    worker = SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer, name="twin-worker")
    worker.register_birth()
    return worker


def _start_as_rq(worker: SimpleWorker, batch: list[tuple[Job, Queue]], ttl: int) -> dict[str, Execution]:
    """RQ 3.0's calls for each job (``prepare_execution`` + ``prepare_job_execution``), in one transaction."""
    executions = {}
    with worker.connection.pipeline() as pipeline:
        for job, queue in batch:
            execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=worker.name)
            executions[job.id] = execution
            worker.executions[execution.id] = execution
            job.prepare_for_execution(worker.name, pipeline=pipeline)
            pipeline.persist(job.key)
            pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
        pipeline.execute()
    return executions


def _finish_as_rq(
    worker: SimpleWorker, finished: list[tuple[Job, Execution]], results: dict[str, Any]
) -> None:
    """RQ 3.0's ``handle_job_success`` for each job (dependents aside), in one transaction."""
    ended_at = rq.utils.now()
    with worker.connection.pipeline() as pipeline:
        for job, execution in finished:
            job.ended_at = ended_at
            job._result = results[job.id]
            job._status = JobStatus.FINISHED
            result_ttl = job.get_result_ttl(worker.default_result_ttl)
            rq_seam.finish_by_rq_calls(worker, job, execution, result_ttl, ended_at, pipeline)
        pipeline.hincrby(worker.key, "successful_job_count", len(finished))
        pipeline.hincrbyfloat(
            worker.key,
            "total_working_time",
            sum((ended_at - (job.started_at or ended_at)).total_seconds() for job, _ in finished),
        )
        pipeline.execute()


def _value(connection: Redis, key: bytes) -> Any:
    kind = connection.type(key).decode()
    if kind == "hash":
        fields = connection.hgetall(key)
        if key.startswith(b"rq:worker:"):  # the client's own address and port: present, not compared
            fields[b"ip_address"] = bool(fields.get(b"ip_address"))
        return kind, fields
    if kind == "zset":
        return kind, connection.zrange(key, 0, -1, withscores=True)
    if kind == "set":
        return kind, sorted(connection.smembers(key))
    if kind == "list":
        return kind, connection.lrange(key, 0, -1)
    if kind == "stream":  # entry ids are the server's clock: compared by their order and fields only
        return kind, [fields for _, fields in connection.xrange(key)]
    return kind, connection.get(key)


def dump(connection: Redis) -> dict[bytes, tuple[Any, int]]:
    """Every key with its value and its TTL in seconds (-1: none)."""
    return {key: (_value(connection, key), connection.ttl(key)) for key in sorted(connection.keys("*"))}


def _same(rq_side: dict, script_side: dict) -> None:
    assert rq_side.keys() == script_side.keys()
    for key, (value, ttl) in rq_side.items():
        other_value, other_ttl = script_side[key]
        if other_value != value and value[0] == "hash":
            differing = {
                f: (value[1].get(f), other_value[1].get(f))
                for f in value[1].keys() | other_value[1].keys()
                if value[1].get(f) != other_value[1].get(f)
            }
            raise AssertionError(f"{key!r}: fields differ (RQ's calls, the script): {differing}")
        assert other_value == value, key
        assert abs(other_ttl - ttl) <= 1, key  # set a moment apart on the server's clock


@pytest.mark.parametrize("lost", [None, "ours-1"], ids=["every-job-kept", "a-job-lost-while-running"])
def test_a_batch_started_and_finished_by_the_scripts_leaves_every_key_as_rq_does(
    twins: tuple[Redis, Redis], monkeypatch: pytest.MonkeyPatch, lost: str | None
) -> None:
    """``lost``: a job whose hash Redis loses while it runs (restarted without persistence): RQ's
    ``Job.save`` at its end writes the worker's whole copy back, so it comes back whole."""
    clock = Clock(monkeypatch)
    sides = []
    for connection, start, finish in (
        (twins[0], _start_as_rq, _finish_as_rq),
        (twins[1], rq_seam.start_executions, rq_seam.finish_successes),
    ):
        clock.restart(INSTANT)
        queue = _enqueue(connection)
        worker = _worker(queue)
        batch = rq_seam.dequeue_ready(queue, 10, Job)
        assert [job.id for job, _ in batch] == [
            "ours-0",
            "ours-1",
            "ours-2",
            "rq-plain",
            "rq-kept",
            "rq-unkept",
            "rq-expiring",
        ]
        executions = start(worker, batch, 45)
        started = dump(connection)
        if lost:
            connection.delete(Job.key_for(lost))
        clock.restart(LATER)
        results = {job.id: {"content_id": job.args[0], "status": "classified"} for job, _ in batch}
        finish(worker, [(job, executions[job.id]) for job, _ in batch], results)
        sides.append((started, dump(connection), worker, batch))

    (rq_started, rq_finished, rq_worker, rq_batch), (started, finished, worker, batch) = sides
    _same(rq_started, started)
    _same(rq_finished, finished)
    if lost:
        assert (
            Job.fetch(lost, connection=twins[1], serializer=JSONSerializer).get_status() == JobStatus.FINISHED
        )
    assert rq_worker.executions == worker.executions == {}
    # What the worker holds of each job is what RQ's calls leave it holding.
    for rq_job_queue, job_queue in zip(rq_batch, batch, strict=True):
        rq_job, job = rq_job_queue[0], job_queue[0]
        assert job.to_dict() == rq_job.to_dict()


def test_the_scripts_comparison_sees_a_difference(
    twins: tuple[Redis, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above can fail: RQ's start against the script's, one execution id apart."""
    clock = Clock(monkeypatch)
    dumps = []
    for connection, start in ((twins[0], _start_as_rq), (twins[1], rq_seam.start_executions)):
        clock.restart(INSTANT)
        if start is _start_as_rq:
            next(clock.ids)
        queue = _enqueue(connection)
        start(_worker(queue), rq_seam.dequeue_ready(queue, 10, Job), 45)
        dumps.append(dump(connection))
    with pytest.raises(AssertionError):
        _same(*dumps)


def test_a_finished_batch_is_what_rq_reads_as_finished(twins: tuple[Redis, Redis]) -> None:
    """Through RQ's own API: status, result, registries, executions and the worker's counters."""
    connection = twins[1]
    queue = _enqueue(connection)
    worker = _worker(queue)
    batch = rq_seam.dequeue_ready(queue, 10, Job)
    executions = rq_seam.start_executions(worker, batch, 45)
    assert sorted(queue.started_job_registry.get_job_ids()) == sorted(job.id for job, _ in batch)
    results = {job.id: {"content_id": job.args[0]} for job, _ in batch}
    rq_seam.finish_successes(worker, [(job, executions[job.id]) for job, _ in batch], results)

    assert queue.started_job_registry.get_job_ids() == []
    assert sorted(queue.finished_job_registry.get_job_ids()) == [
        "ours-0", "ours-1", "ours-2", "rq-expiring", "rq-kept", "rq-plain"
    ]  # fmt: skip
    assert not Job.exists("rq-unkept", connection=connection)  # result_ttl 0: deleted, as RQ does
    for job_id in ("ours-0", "rq-plain", "rq-kept"):
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() == results[job_id]
        assert job.ended_at is not None and job.started_at is not None
    assert connection.ttl(Job.key_for("ours-0")) == pytest.approx(RESULT_TTL, abs=2)
    assert connection.ttl(Job.key_for("rq-kept")) == -1
    assert connection.ttl(Job.dependents_key_for("ours-1")) == pytest.approx(RESULT_TTL, abs=2)
    worker.refresh()
    assert worker.successful_job_count == 7
    assert not connection.keys("rq:execution:*")
