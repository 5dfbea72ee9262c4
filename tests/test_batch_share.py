"""workers.worker.batch_share: how many jobs a worker takes for a batch, and the worker asking Redis."""

from __future__ import annotations

import fakeredis
import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

import config
from jobs import rq_seam
from tests.redis_trips import counted_round_trips
from workers.worker import FinbertWorker, batch_share


@pytest.mark.parametrize(
    ("available", "workers", "most", "least", "expected"),
    [
        (10_000, 2, 256, 32, 256),  # a backlog: full batches
        (300, 2, 256, 32, 150),  # its end: an even share each
        (301, 2, 256, 32, 151),  # rounded up: no job left for a third batch
        (40, 2, 256, 32, 32),  # never less than a forward pass (the batch wait may fill it)
        (1, 2, 256, 32, 32),
        (100, 1, 256, 32, 100),
        (100, 0, 256, 32, 100),  # not registered yet: counts as one
        (7, 3, 2, 32, 2),  # WORKER_BATCH_JOBS below a forward pass wins
        (5, 1, 256, 0, 5),
    ],
)
def test_the_share(available: int, workers: int, most: int, least: int, expected: int) -> None:
    assert batch_share(available, workers, most, least) == expected


def test_a_worker_takes_its_share_of_what_waits(tmp_path) -> None:
    """Two workers registered on the queue, 99 jobs waiting besides the one just taken: 50 each."""
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    settings = config.load_settings(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "WORKER_BATCH_JOBS": "256",
            "FINBERT_BATCH_SIZE": "8",
        }
    )
    worker = FinbertWorker(["ml_classification"], connection=connection, config=settings)
    other = SimpleWorker(["ml_classification"], connection=connection, serializer=JSONSerializer)
    queue = Queue("ml_classification", connection=connection, serializer=JSONSerializer)
    for index in range(99):
        queue.enqueue("jobs.classify.classify_content", index, "0a1b2c3d4e")
    worker.register_birth()
    assert worker._busy_with_share() == 100  # alone: everything waiting
    other.register_birth()
    assert worker._busy_with_share() == 50


def test_waiting_and_workers_counts_as_rqs_calls_in_one_round_trip(fake_or_real_redis: Redis) -> None:
    connection = fake_or_real_redis
    queue = Queue("ml_classification", connection=connection, serializer=JSONSerializer)
    other = Queue("other", connection=connection, serializer=JSONSerializer)
    for index in range(7):
        queue.enqueue("jobs.classify.classify_content", index, "0a1b2c3d4e")
    other.enqueue("jobs.classify.classify_content", 99, "0a1b2c3d4e")
    for name, queues in (("a", [queue]), ("b", [queue, other]), ("c", [other])):
        SimpleWorker(queues, name=name, connection=connection, serializer=JSONSerializer).register_birth()

    for counted in (queue, other):
        with counted_round_trips() as sends:
            figures = rq_seam.waiting_and_workers(counted)
        assert figures == (counted.count, SimpleWorker.count(connection=connection, queue=counted))
        assert sends == [["LLEN", "SCARD"]]
    assert rq_seam.waiting_and_workers(queue) == (7, 2)


def test_a_job_that_came_alone_is_its_whole_batch(tmp_path) -> None:
    """Nothing else waiting when it was taken: the batch is that job, and no poll is made for more;
    the worker is marked busy in the same round trip."""
    worker, queue = _worker_and_queue(tmp_path, "60000")
    worker.register_birth()

    with counted_round_trips() as sends:
        assert worker._busy_with_share() == 1
    assert sends == [["HSET", "LLEN", "SCARD"]]  # the state, then the counts
    assert worker.connection.hget(worker.key, "state") == b"busy"
    queue.enqueue("jobs.classify.classify_content", 1, "0a1b2c3d4e")
    assert worker._busy_with_share() == 32  # another waits: a forward pass's worth, as batch_share says


def _worker_and_queue(tmp_path, wait_ms: str) -> tuple[FinbertWorker, Queue]:
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    settings = config.load_settings(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "FINBERT_BATCH_WAIT_MS": wait_ms}
    )
    worker = FinbertWorker(["ml_classification"], connection=connection, config=settings)
    return worker, Queue("ml_classification", connection=connection, serializer=JSONSerializer)


def test_a_job_that_came_alone_is_not_held_for_the_batch_wait(tmp_path, monkeypatch) -> None:
    worker, _queue = _worker_and_queue(tmp_path, "60000")

    def no_waiting(seconds: float) -> None:
        raise AssertionError(f"waited {seconds} s for jobs with none arriving")

    monkeypatch.setattr("workers.worker.time.sleep", no_waiting)

    assert worker._take_ready_jobs(31) == []


def test_a_batch_that_is_filling_waits_for_what_arrives(tmp_path, monkeypatch) -> None:
    worker, queue = _worker_and_queue(tmp_path, "60000")
    for index in range(5):
        queue.enqueue("jobs.classify.classify_content", index, "0a1b2c3d4e", job_id=f"j{index}")
    arrivals = iter(range(5, 8))

    def one_arrives(_seconds: float) -> None:  # a job arrives during each pause of the wait
        index = next(arrivals)
        queue.enqueue("jobs.classify.classify_content", index, "0a1b2c3d4e", job_id=f"j{index}")

    monkeypatch.setattr("workers.worker.time.sleep", one_arrives)

    taken = worker._take_ready_jobs(8)

    assert [job.id for job, _ in taken] == [f"j{index}" for index in range(8)]
