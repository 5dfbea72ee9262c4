"""jobs.queue on fakeredis (with its Lua extra, which RQ's unique enqueue needs): ids, policy, uniqueness.

Jobs are run here only by an in-process ``SimpleWorker`` whose job function is replaced, so no
model and no database are involved; the real worker runs in tests/test_queue_integration.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import fakeredis
import pytest
from rq import Queue, SimpleWorker
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus

import jobs.classify
from jobs.queue import (
    FAILURE_TTL,
    JOB_FUNCTION,
    JOB_ID_PREFIX,
    JOB_TIMEOUT,
    MAX_ATTEMPTS,
    QUEUE_NAME,
    RESULT_TTL,
    RETRY_INTERVALS,
    EnqueueReport,
    classification_queue,
    content_id_of,
    enqueue_ids,
    job_id_for,
)


@pytest.fixture
def connection() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.close()


@pytest.fixture
def queue(connection: fakeredis.FakeRedis) -> Queue:
    return classification_queue(connection)


def job_keys(connection: fakeredis.FakeRedis) -> set[str]:
    return {key.decode() for key in connection.keys("rq:job:*")}


def run_jobs(queue: Queue, job_function: Callable[[int], object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every queued job in this process with ``job_function`` standing in for classify_content."""
    monkeypatch.setattr(jobs.classify, "classify_content", job_function)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def store_fails(content_id: int) -> dict:
    raise RuntimeError(f"store failed for content {content_id}")


# -- job ids --------------------------------------------------------------------------------------


def test_job_id_names_the_content() -> None:
    assert job_id_for(42) == "classify-content-42"
    assert job_id_for(42).startswith(JOB_ID_PREFIX)
    assert content_id_of("classify-content-42") == 42
    assert content_id_of(job_id_for(7_000_000_001)) == 7_000_000_001


@pytest.mark.parametrize("job_id", ["hourly-sweep", "classify-content-", "classify-content-x1", "other-42"])
def test_other_job_ids_name_no_content(job_id: str) -> None:
    assert content_id_of(job_id) is None


def test_job_ids_hold_only_characters_rq_accepts(queue: Queue) -> None:
    # RQ refuses ':' and other characters in ids; ours must pass its validation.
    job = queue.enqueue(JOB_FUNCTION, 1, job_id=job_id_for(123456789), unique=True)
    assert job.id == "classify-content-123456789"


# -- enqueue_ids ----------------------------------------------------------------------------------


def test_enqueue_ids_enqueues_one_job_per_id_with_the_policy(
    queue: Queue, connection: fakeredis.FakeRedis
) -> None:
    report = enqueue_ids(queue, [5, 3, 9])

    assert report == EnqueueReport(enqueued=[5, 3, 9])
    assert queue.name == QUEUE_NAME
    assert queue.job_ids == ["classify-content-5", "classify-content-3", "classify-content-9"]
    assert job_keys(connection) == {
        "rq:job:classify-content-5",
        "rq:job:classify-content-3",
        "rq:job:classify-content-9",
    }
    for content_id in (5, 3, 9):
        job = Job.fetch(job_id_for(content_id), connection=connection)
        assert job.func_name == JOB_FUNCTION
        assert job.args == (content_id,)
        assert job.kwargs == {}
        assert job.origin == QUEUE_NAME
        assert job.get_status() == JobStatus.QUEUED
        # MAX_ATTEMPTS = the first run + retries; the intervals are the waits before retry 1 and 2.
        assert MAX_ATTEMPTS == 3
        assert job.retries_left == MAX_ATTEMPTS - 1 == 2
        assert job.retry_intervals == RETRY_INTERVALS == [5, 30]
        assert job.timeout == JOB_TIMEOUT
        assert job.result_ttl == RESULT_TTL
        assert job.failure_ttl == FAILURE_TTL
        # A waiting job never expires: only its result and its failure have a lifetime.
        assert connection.ttl(job.key) == -1


def test_ttls_are_chosen_on_purpose() -> None:
    # The failure TTL is the cool-down before a sweep retries a failed content: not RQ's one year.
    assert 0 < RESULT_TTL < FAILURE_TTL < 365 * 24 * 3600
    assert RESULT_TTL >= 60  # long enough for --wait and the dashboard to read the result


def test_enqueueing_the_same_ids_twice_adds_no_job(queue: Queue, connection: fakeredis.FakeRedis) -> None:
    first = enqueue_ids(queue, [1, 2, 3])
    keys = job_keys(connection)

    second = enqueue_ids(queue, [3, 2, 1, 4])

    assert first.enqueued == [1, 2, 3]
    assert second.enqueued == [4]
    assert second.already_pending == [3, 2, 1]
    assert second.recently_finished == second.cooling_down == []
    assert queue.count == 4
    assert sorted(queue.job_ids) == sorted(job_id_for(i) for i in (1, 2, 3, 4))
    assert job_keys(connection) == keys | {"rq:job:classify-content-4"}
    assert "already waiting or running 3" in second.describe()
    assert second.job_ids == [job_id_for(i) for i in (4, 3, 2, 1)]


def test_duplicates_in_the_input_are_collapsed(queue: Queue) -> None:
    report = enqueue_ids(queue, [7, 3, 7, 7, 3, 8])

    assert report.enqueued == [7, 3, 8]
    assert report.already_pending == []
    assert queue.job_ids == [job_id_for(7), job_id_for(3), job_id_for(8)]


def test_empty_input_enqueues_nothing(queue: Queue, connection: fakeredis.FakeRedis) -> None:
    assert enqueue_ids(queue, []) == EnqueueReport()
    assert queue.count == 0
    assert job_keys(connection) == set()


def test_a_failed_job_is_reported_as_cooling_down(
    queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_ids(queue, [11])
    job = Job.fetch(job_id_for(11), connection=connection)
    job.retries_left = 0  # its retries are used up: this run is its last
    job.save()
    run_jobs(queue, store_fails, monkeypatch)
    assert job.get_status() == JobStatus.FAILED
    assert queue.failed_job_registry.get_job_ids() == [job_id_for(11)]

    report = enqueue_ids(queue, [11, 12])

    assert report.cooling_down == [11]
    assert report.enqueued == [12]
    assert queue.job_ids == [job_id_for(12)]  # the failed one waits out FAILURE_TTL in the registry
    assert queue.failed_job_registry.get_job_ids() == [job_id_for(11)]
    assert 0 < connection.ttl(job.key) <= FAILURE_TTL
    assert "(cooling down) 1" in report.describe()


def test_a_finished_job_is_reported_as_recently_finished(
    queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_ids(queue, [21])
    run_jobs(queue, lambda content_id: {"content_id": content_id, "status": "classified"}, monkeypatch)
    assert Job.fetch(job_id_for(21), connection=connection).get_status() == JobStatus.FINISHED

    report = enqueue_ids(queue, [21])

    assert report.recently_finished == [21]
    assert report.enqueued == []
    assert queue.count == 0
    assert 0 < connection.ttl(Job.key_for(job_id_for(21))) <= RESULT_TTL


def test_a_failing_job_runs_three_times_with_the_retry_intervals(
    queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy as RQ applies it: fail, wait 5 s, fail, wait 30 s, fail for good."""
    enqueue_ids(queue, [31])
    job_id = job_id_for(31)
    registry = queue.scheduled_job_registry

    for attempt, interval in enumerate(RETRY_INTERVALS, start=1):
        before = time.time()
        run_jobs(queue, store_fails, monkeypatch)
        job = Job.fetch(job_id, connection=connection)
        assert job.get_status() == JobStatus.SCHEDULED, f"after attempt {attempt}"
        assert job.retries_left == MAX_ATTEMPTS - 1 - attempt
        due = registry.get_scheduled_time(job).timestamp()
        assert before + interval - 1 <= due <= time.time() + interval + 1
        # While it waits for its retry, enqueueing it again adds nothing.
        assert enqueue_ids(queue, [31]).already_pending == [31]
        # Play the scheduler: the retry is due now.
        registry.remove(job)
        queue.enqueue_job(job)

    run_jobs(queue, store_fails, monkeypatch)

    job = Job.fetch(job_id, connection=connection)
    assert job.get_status() == JobStatus.FAILED
    assert job.retries_left == 0
    assert queue.failed_job_registry.get_job_ids() == [job_id]
    assert registry.get_job_ids() == []
    assert "store failed for content 31" in (job.latest_result().exc_string or "")


def test_a_job_that_expires_between_duplicate_and_status_is_enqueued_again(
    queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race _enqueue_one means to handle: its job exists at enqueue, then expires before the status read."""
    enqueue_ids(queue, [41])
    real_enqueue = queue.enqueue

    def enqueue_then_expire(*args, **kwargs):
        try:
            return real_enqueue(*args, **kwargs)
        except DuplicateJobError:
            connection.delete(Job.key_for(kwargs["job_id"]))  # its result TTL ends right now
            connection.lrem(queue.key, 0, kwargs["job_id"])
            monkeypatch.setattr(queue, "enqueue", real_enqueue)
            raise

    monkeypatch.setattr(queue, "enqueue", enqueue_then_expire)

    report = enqueue_ids(queue, [41])

    assert report.enqueued == [41]
    assert queue.job_ids == [job_id_for(41)]
