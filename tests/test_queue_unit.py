"""jobs.queue on fakeredis (with its Lua extra, which RQ's unique enqueue needs): ids, policy, uniqueness,
cool-downs.

Each test has its own migrated SQLite database (its identity is what job ids carry). Jobs are run here
only by an in-process ``SimpleWorker`` (JSON, as every worker of the project) whose job function is
replaced, so no model is involved; the real worker runs in tests/test_queue_integration.py.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import fakeredis
import pytest
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

import jobs.classify
import jobs.queue
from db import queries as db_queries
from db.identity import database_id
from db.migrate import upgrade
from db.models import Content
from db.session import describe, engine_for, session_scope
from jobs.binding import binding_of
from jobs.classify import ClassificationFailed
from jobs.queue import (
    FAILURE_TTL,
    JOB_FUNCTION,
    JOB_ID_PREFIX,
    JOB_TIMEOUT,
    MAX_ATTEMPTS,
    POST_FAILURE_COOL_DOWN,
    QUEUE_NAME,
    RESULT_TTL,
    RETRY_INTERVALS,
    SERIALIZER,
    SHORT_COOL_DOWN,
    EnqueueReport,
    classification_queue,
    content_id_of,
    enqueue_ids,
    failure_cool_down,
    job_id_for,
    parse_job_id,
)
from jobs.rq_seam import JobCall
from jobs.sweep import sweep
from tests.rows import store_classification

#: a database identity as ``volfefe db upgrade`` makes them (10 hex digits).
SOME_DATABASE = "0a1b2c3d4e"


@pytest.fixture
def connection() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database: it has an identity."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def ident(db: str) -> str:
    return database_id(db)


@pytest.fixture
def queue(connection: fakeredis.FakeRedis) -> Queue:
    return classification_queue(connection)


def job_keys(connection: fakeredis.FakeRedis) -> set[str]:
    return {key.decode() for key in connection.keys("rq:job:*")}


def fetch(connection: fakeredis.FakeRedis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


def run_jobs(
    queue: Queue, job_function: Callable[[int, str], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run every queued job in this process with ``job_function`` standing in for classify_content."""
    monkeypatch.setattr(jobs.classify, "classify_content", job_function)
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


def post_fails(content_id: int, _database_id: str) -> dict:
    raise ClassificationFailed(f"store failed for content {content_id}")


def infrastructure_fails(content_id: int, _database_id: str) -> dict:
    raise RuntimeError(f"job timed out for content {content_id}")


def fail_for_good(
    queue: Queue, job_id: str, job_function: Callable[[int, str], object], monkeypatch: pytest.MonkeyPatch
) -> Job:
    """Run the job once with its retries used up: it ends in the failed registry."""
    job = fetch(queue.connection, job_id)
    job.retries_left = 0
    job.save()
    run_jobs(queue, job_function, monkeypatch)
    job = fetch(queue.connection, job_id)
    assert job.get_status() == JobStatus.FAILED
    return job


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move jobs.queue's clock ``seconds`` ahead (the cool-downs are measured with it)."""
    real_now = jobs.queue.now
    monkeypatch.setattr(jobs.queue, "now", lambda: real_now() + timedelta(seconds=seconds))


# -- job ids --------------------------------------------------------------------------------------


def test_job_id_names_the_content_and_its_database() -> None:
    assert job_id_for(42, SOME_DATABASE) == "classify-content-42-0a1b2c3d4e"
    assert job_id_for(42, SOME_DATABASE).startswith(JOB_ID_PREFIX)
    assert parse_job_id("classify-content-42-0a1b2c3d4e") == (42, SOME_DATABASE)
    assert content_id_of("classify-content-42-0a1b2c3d4e") == 42
    assert parse_job_id(job_id_for(7_000_000_001, "ff00")) == (7_000_000_001, "ff00")
    # The same content in two databases: two jobs.
    assert job_id_for(42, SOME_DATABASE) != job_id_for(42, "9f8e7d6c5b")


@pytest.mark.parametrize(
    "job_id",
    [
        "hourly-sweep",
        "classify-content-",
        "classify-content-42",  # the old form: it names no database, so no job of ours
        "classify-content-x1-0a1b",
        "classify-content-42-",
        "classify-content-42-XYZ",
        "classify-content-42-0a1b-7",
        "other-42-0a1b",
    ],
)
def test_other_job_ids_name_no_content(job_id: str) -> None:
    assert parse_job_id(job_id) is None
    assert content_id_of(job_id) is None


def test_job_ids_hold_only_characters_rq_accepts(queue: Queue) -> None:
    # RQ refuses ':' and other characters in ids; ours must pass its validation.
    job = queue.enqueue(
        JOB_FUNCTION, 1, SOME_DATABASE, job_id=job_id_for(123456789, SOME_DATABASE), unique=True
    )
    assert job.id == "classify-content-123456789-0a1b2c3d4e"


# -- enqueue_ids ----------------------------------------------------------------------------------


def test_enqueue_ids_enqueues_one_json_job_per_id_with_the_policy(
    db: str, ident: str, connection: fakeredis.FakeRedis
) -> None:
    report = enqueue_ids(connection, db, [5, 3, 9])

    assert report == EnqueueReport(database_id=ident, content_ids=[5, 3, 9], enqueued=[5, 3, 9])
    queue = classification_queue(connection)
    assert queue.name == QUEUE_NAME
    assert queue.job_ids == [job_id_for(i, ident) for i in (5, 3, 9)]
    assert job_keys(connection) == {f"rq:job:classify-content-{i}-{ident}" for i in (5, 3, 9)}
    assert report.job_ids == queue.job_ids
    # The queue now serves this database.
    binding = binding_of(connection, QUEUE_NAME)
    assert binding is not None and (binding.database_id, binding.database) == (ident, describe(db))
    for content_id in (5, 3, 9):
        job = fetch(connection, job_id_for(content_id, ident))
        assert job.func_name == JOB_FUNCTION
        assert list(job.args) == [content_id, ident]
        assert job.kwargs == {}
        assert job.origin == QUEUE_NAME
        assert job.get_status() == JobStatus.QUEUED
        # The payload is JSON (data, never code): RQ stores it zlib-compressed.
        payload = json.loads(zlib.decompress(connection.hget(job.key, "data")))
        assert payload == [JOB_FUNCTION, None, [content_id, ident], {}]
        # MAX_ATTEMPTS = the first run + retries; the intervals are the waits before retry 1 and 2.
        assert MAX_ATTEMPTS == 3
        assert job.retries_left == MAX_ATTEMPTS - 1 == 2
        assert job.retry_intervals == RETRY_INTERVALS == [5, 30]
        assert job.timeout == JOB_TIMEOUT
        assert job.result_ttl == RESULT_TTL
        assert job.failure_ttl == FAILURE_TTL
        # A waiting job never expires: only its result and its failure have a lifetime.
        assert connection.ttl(job.key) == -1


def test_ttls_and_cool_downs_are_chosen_on_purpose() -> None:
    # The failure TTL keeps the record of a failure: not RQ's one year.
    assert 0 < RESULT_TTL < FAILURE_TTL < 365 * 24 * 3600
    assert RESULT_TTL >= 60  # long enough for --wait and the dashboard to read the result
    # A post that failed on its own waits a day; anything else minutes; both while its record lasts.
    assert 0 < SHORT_COOL_DOWN < POST_FAILURE_COOL_DOWN <= FAILURE_TTL


def test_enqueueing_the_same_ids_twice_adds_no_job(
    db: str, ident: str, connection: fakeredis.FakeRedis
) -> None:
    first = enqueue_ids(connection, db, [1, 2, 3])
    keys = job_keys(connection)

    second = enqueue_ids(connection, db, [3, 2, 1, 4])

    assert first.enqueued == [1, 2, 3]
    assert second.enqueued == [4]
    assert second.already_pending == [3, 2, 1]
    assert second.recently_finished == second.cooling_down == second.retried_after_failure == []
    queue = classification_queue(connection)
    assert queue.count == 4
    assert sorted(queue.job_ids) == sorted(job_id_for(i, ident) for i in (1, 2, 3, 4))
    assert job_keys(connection) == keys | {f"rq:job:classify-content-4-{ident}"}
    assert "already waiting or running 3" in second.describe()
    assert second.content_ids == [3, 2, 1, 4]
    assert second.job_ids == [job_id_for(i, ident) for i in (3, 2, 1, 4)]


def test_duplicates_in_the_input_are_collapsed(db: str, ident: str, connection: fakeredis.FakeRedis) -> None:
    report = enqueue_ids(connection, db, [7, 3, 7, 7, 3, 8])

    assert report.enqueued == report.content_ids == [7, 3, 8]
    assert report.already_pending == []
    assert classification_queue(connection).job_ids == [job_id_for(i, ident) for i in (7, 3, 8)]


def test_empty_input_enqueues_nothing(db: str, ident: str, connection: fakeredis.FakeRedis) -> None:
    assert enqueue_ids(connection, db, []) == EnqueueReport(database_id=ident)
    assert classification_queue(connection).count == 0
    assert job_keys(connection) == set()


def test_a_database_without_identity_enqueues_nothing(
    tmp_path: Path, connection: fakeredis.FakeRedis
) -> None:
    from db.identity import DatabaseNotInitialised

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url, "0001")  # the tables of before identities
    try:
        with pytest.raises(DatabaseNotInitialised, match="run `volfefe db upgrade`"):
            enqueue_ids(connection, url, [1])
    finally:
        engine_for(url).dispose()
    assert connection.keys("*") == []


def test_a_post_failure_cools_down_a_day_then_is_enqueued_again(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_ids(connection, db, [11])
    job_id = job_id_for(11, ident)
    job = fail_for_good(queue, job_id, post_fails, monkeypatch)
    assert queue.failed_job_registry.get_job_ids() == [job_id]
    assert failure_cool_down(job) == POST_FAILURE_COOL_DOWN

    report = enqueue_ids(connection, db, [11, 12])

    assert report.cooling_down == [11]
    assert report.enqueued == [12]
    assert report.retried_after_failure == []
    assert queue.job_ids == [job_id_for(12, ident)]  # the failed one waits out its cool-down
    assert queue.failed_job_registry.get_job_ids() == [job_id]
    assert 0 < connection.ttl(job.key) <= FAILURE_TTL
    assert "failed and cooling down 1" in report.describe()
    # A short cool-down is not enough for a post's own failure.
    later(monkeypatch, SHORT_COOL_DOWN + 1)
    assert enqueue_ids(connection, db, [11]).cooling_down == [11]

    later(monkeypatch, POST_FAILURE_COOL_DOWN + 1)
    again = enqueue_ids(connection, db, [11])

    assert again.enqueued == again.retried_after_failure == [11]
    assert again.cooling_down == []
    assert "(of which 1 retried after a failure)" in again.describe()
    assert queue.failed_job_registry.get_job_ids() == []
    fresh = fetch(connection, job_id)
    assert fresh.get_status() == JobStatus.QUEUED
    assert fresh.retries_left == MAX_ATTEMPTS - 1  # a new job: all its attempts
    assert fresh.latest_result() is None  # the old failure's result went with it
    assert queue.job_ids == [job_id_for(12, ident), job_id]


def test_any_other_failure_cools_down_minutes(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_ids(connection, db, [13])
    job = fail_for_good(queue, job_id_for(13, ident), infrastructure_fails, monkeypatch)
    assert failure_cool_down(job) == SHORT_COOL_DOWN
    assert enqueue_ids(connection, db, [13]).cooling_down == [13]

    later(monkeypatch, SHORT_COOL_DOWN + 1)
    report = enqueue_ids(connection, db, [13])

    assert report.enqueued == report.retried_after_failure == [13]
    assert fetch(connection, job_id_for(13, ident)).get_status() == JobStatus.QUEUED


def test_a_job_squatting_our_id_is_replaced_at_once(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed job under our id that runs another function (pushed by hand, say): no cool-down."""
    job_id = job_id_for(14, ident)
    squatter = queue.enqueue("math.sqrt", -1, job_id=job_id, failure_ttl=FAILURE_TTL)
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    assert fetch(connection, job_id).get_status() == JobStatus.FAILED
    assert failure_cool_down(fetch(connection, squatter.id)) == 0

    report = enqueue_ids(connection, db, [14])

    assert report.enqueued == report.retried_after_failure == [14]
    job = fetch(connection, job_id)
    assert (job.func_name, list(job.args)) == (JOB_FUNCTION, [14, ident])
    assert queue.failed_job_registry.get_job_ids() == []


def test_a_job_redis_lost_under_a_worker_is_enqueued_again(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis
) -> None:
    """Redis restarted empty while a worker started the job; its replayed start wrote a few fields of a
    hash that is gone. Those remains are no job (RQ cannot run them): the sweep enqueues the post."""
    enqueue_ids(connection, db, [16])
    job_id = job_id_for(16, ident)
    job, _queue = queue.dequeue_any([queue], None, connection=connection, serializer=JSONSerializer)
    connection.flushall()
    with connection.pipeline() as pipeline:
        job.prepare_for_execution("a-worker", pipeline=pipeline)
        pipeline.execute()

    report = enqueue_ids(connection, db, [16])

    assert report.enqueued == [16] and report.already_pending == []
    job = fetch(connection, job_id)
    assert (job.func_name, list(job.args), job.get_status()) == (JOB_FUNCTION, [16, ident], JobStatus.QUEUED)
    assert job.worker_name is None and queue.job_ids == [job_id]


def test_a_refused_job_is_replaced_at_once(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that a worker refused (``refused: ...``, as FinbertWorker records it) cools down 0 s."""
    from jobs.rq_seam import fail_unrun

    enqueue_ids(connection, db, [15])
    job_id = job_id_for(15, ident)
    worker = SimpleWorker([queue], connection=connection, serializer=JSONSerializer)
    worker.register_birth()
    job, _queue = queue.dequeue_any([queue], None, connection=connection, serializer=JSONSerializer)
    from rq.executions import Execution

    execution = Execution.create(job, 60, pipeline=connection, worker_name=worker.name)
    fail_unrun(worker, job, queue, execution, "refused: enqueued for database 9f8e7d6c5b, not this one")
    job = fetch(connection, job_id)
    assert job.get_status() == JobStatus.FAILED
    assert failure_cool_down(job) == 0

    report = enqueue_ids(connection, db, [15])

    assert report.enqueued == report.retried_after_failure == [15]
    assert fetch(connection, job_id).get_status() == JobStatus.QUEUED


def test_a_failed_jobs_cool_down_is_its_own_databases_only(
    db: str, ident: str, tmp_path: Path, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch
) -> None:
    other = f"sqlite:///{tmp_path / 'b.db'}"
    upgrade(other)
    other_ident = database_id(other)
    try:
        assert other_ident != ident
        enqueue_ids(connection, db, [11])
        fail_for_good(queue, job_id_for(11, ident), post_fails, monkeypatch)

        # The other database's content 11 (on its own queue, or on this one once it is idle).
        on_own_queue = enqueue_ids(connection, other, [11], queue_name="ml_classification_b")
        taken_over = enqueue_ids(connection, other, [12])

        assert on_own_queue.enqueued == [11] and on_own_queue.cooling_down == []
        assert taken_over.enqueued == [12]
        assert classification_queue(connection, "ml_classification_b").job_ids == [
            job_id_for(11, other_ident)
        ]
        # This database's failure is untouched by the other's enqueues, and still cools down.
        assert queue.failed_job_registry.get_job_ids() == [job_id_for(11, ident)]
        assert fetch(connection, job_id_for(11, ident)).get_status() == JobStatus.FAILED
    finally:
        engine_for(other).dispose()


def test_a_finished_job_is_reported_as_recently_finished(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_ids(connection, db, [21])
    run_jobs(queue, lambda content_id, _db: {"content_id": content_id, "status": "classified"}, monkeypatch)
    assert fetch(connection, job_id_for(21, ident)).get_status() == JobStatus.FINISHED

    report = enqueue_ids(connection, db, [21])

    assert report.recently_finished == [21]
    assert report.enqueued == []
    assert queue.count == 0
    assert 0 < connection.ttl(Job.key_for(job_id_for(21, ident))) <= RESULT_TTL


def test_a_failing_job_runs_three_times_with_the_retry_intervals(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy as RQ applies it: fail, wait 5 s, fail, wait 30 s, fail for good."""
    enqueue_ids(connection, db, [31])
    job_id = job_id_for(31, ident)
    registry = queue.scheduled_job_registry

    for attempt, interval in enumerate(RETRY_INTERVALS, start=1):
        before = time.time()
        run_jobs(queue, post_fails, monkeypatch)
        job = fetch(connection, job_id)
        assert job.get_status() == JobStatus.SCHEDULED, f"after attempt {attempt}"
        assert job.retries_left == MAX_ATTEMPTS - 1 - attempt
        due = registry.get_scheduled_time(job).timestamp()
        assert before + interval - 1 <= due <= time.time() + interval + 1
        # While it waits for its retry, enqueueing it again adds nothing.
        assert enqueue_ids(connection, db, [31]).already_pending == [31]
        # Play the scheduler: the retry is due now.
        registry.remove(job)
        queue.enqueue_job(job)

    run_jobs(queue, post_fails, monkeypatch)

    job = fetch(connection, job_id)
    assert job.get_status() == JobStatus.FAILED
    assert job.retries_left == 0
    assert queue.failed_job_registry.get_job_ids() == [job_id]
    assert registry.get_job_ids() == []
    assert "store failed for content 31" in (job.latest_result().exc_string or "")


def test_a_job_that_another_enqueuer_made_and_that_expired_is_enqueued_again(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race enqueue_ids means to handle: another enqueuer's job for the id appears just before the
    unique enqueue (which therefore refuses ours), then expires before it is looked at again."""
    enqueue_ids(connection, db, [42])
    real_enqueue_unique = jobs.queue.enqueue_unique
    raced: list[str] = []

    def another_enqueuer_first(queue: Queue, template: Job, calls: list[JobCall]) -> list[bool]:
        monkeypatch.setattr(jobs.queue, "enqueue_unique", real_enqueue_unique)
        theirs = [call for call in calls if call.job_id == job_id_for(41, ident)]
        assert real_enqueue_unique(queue, template, theirs) == [True]  # the other enqueuer wins the race
        enqueued = real_enqueue_unique(queue, template, calls)
        assert enqueued == [False]
        connection.delete(Job.key_for(theirs[0].job_id))  # and its job's result TTL ends right now
        connection.lrem(queue.key, 0, theirs[0].job_id)
        raced.append(theirs[0].job_id)
        return enqueued

    monkeypatch.setattr(jobs.queue, "enqueue_unique", another_enqueuer_first)

    report = enqueue_ids(connection, db, [41, 42])

    assert raced == [job_id_for(41, ident)]
    assert report.enqueued == [41]
    assert report.already_pending == [42]
    assert queue.job_ids == [job_id_for(42, ident), job_id_for(41, ident)]
    assert fetch(connection, job_id_for(41, ident)).get_status() == JobStatus.QUEUED


def test_many_ids_in_several_chunks_each_once(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis
) -> None:
    ids = list(range(1, jobs.queue.ENQUEUE_CHUNK * 2 + 7))
    first = enqueue_ids(connection, db, ids[: jobs.queue.ENQUEUE_CHUNK + 3])

    report = enqueue_ids(connection, db, ids)

    assert first.enqueued == ids[: jobs.queue.ENQUEUE_CHUNK + 3]
    assert report.already_pending == first.enqueued
    assert report.enqueued == ids[jobs.queue.ENQUEUE_CHUNK + 3 :]
    assert queue.job_ids == [job_id_for(i, ident) for i in ids]
    assert len(job_keys(connection)) == len(ids)


def test_the_serializer_is_json() -> None:
    assert SERIALIZER is JSONSerializer


def test_the_sweep_enqueues_every_unclassified_content_page_by_page(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyset pages of 3 ids, enqueue chunks of 2: every unclassified content once, oldest first."""
    monkeypatch.setattr(db_queries, "UNCLASSIFIED_PAGE", 3)
    monkeypatch.setattr(jobs.queue, "ENQUEUE_CHUNK", 2)
    with session_scope(db) as session:
        contents = [Content(source="t", external_id=str(i), text=f"post {i}") for i in range(11)]
        session.add_all(contents)
        session.flush()
        classified = [content.id for index, content in enumerate(contents) if index % 4 == 0]
        for content_id in classified:
            store_classification(session, content_id, "neutral", 0.6, "m", {"neutral": 0.6, "positive": 0.4})
        unclassified = [content.id for content in contents if content.id not in classified]

    report = sweep(connection, db, models=["finbert"])
    again = sweep(connection, db, limit=4, models=["finbert"])

    assert report.content_ids == report.enqueued == unclassified
    assert queue.job_ids == [job_id_for(content_id, ident) for content_id in unclassified]
    assert again.content_ids == again.already_pending == unclassified[:4]
    assert again.enqueued == []


def test_the_hourly_sweep_takes_new_posts_first_and_a_bounded_backfill(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis
) -> None:
    """A model added to VOLFEFE_MODELS: every new post is enqueued, and at most the backfill bound of the
    contents that lack only the new model, oldest first, behind them."""
    from config import load_settings
    from jobs.sweep import hourly_sweep

    with session_scope(db) as session:
        contents = [Content(source="t", external_id=f"b{i}", text=f"post {i}") for i in range(8)]
        session.add_all(contents)
        session.flush()
        ids = [content.id for content in contents]
        for content_id in ids[:6]:  # classified by the first model before the second was added
            store_classification(session, content_id, "neutral", 0.6, "m", {"neutral": 0.6, "positive": 0.4})
    config = load_settings(
        {"DATABASE_URL": db, "VOLFEFE_MODELS": "finbert=/m/a,prosus=/m/b", "VOLFEFE_BACKFILL_PER_SWEEP": "4"}
    )

    report, backfill = hourly_sweep(connection, config)

    assert report.enqueued == [*ids[6:], *ids[:4]] and backfill == 4
    assert queue.job_ids == [job_id_for(content_id, ident) for content_id in [*ids[6:], *ids[:4]]]
    # The next sweep: the backfill still waiting counts against the bound; nothing is doubled.
    again, _ = hourly_sweep(connection, config)
    assert again.enqueued == [] and sorted(again.already_pending) == sorted([*ids[6:], *ids[:4]])
    nothing = load_settings(
        {"DATABASE_URL": db, "VOLFEFE_MODELS": "finbert=/m/a,prosus=/m/b", "VOLFEFE_BACKFILL_PER_SWEEP": "0"}
    )
    assert hourly_sweep(connection, nothing)[1] == 0


def test_a_sweep_replaces_a_finished_job_of_a_content_that_still_lacks_a_model(
    db: str, ident: str, queue: Queue, connection: fakeredis.FakeRedis
) -> None:
    """A worker configured with fewer models finished the content's job: the job hash stays for
    RESULT_TTL, but the database says a model is missing, so the sweep enqueues it again at once."""
    from rq.job import Job, JobStatus

    from jobs.queue import SERIALIZER

    with session_scope(db) as session:
        content = Content(source="t", external_id="f1", text="post")
        session.add(content)
        session.flush()
        content_id = content.id
        store_classification(session, content_id, "neutral", 0.6, "m", {"neutral": 0.6, "positive": 0.4})
    first = sweep(connection, db, models=["finbert", "prosus"])
    assert first.enqueued == [content_id]
    job = Job.fetch(job_id_for(content_id, ident), connection, SERIALIZER)
    queue.remove(job.id)
    job.set_status(JobStatus.FINISHED)  # as a worker with finbert alone would have ended it

    again = sweep(connection, db, models=["finbert", "prosus"])
    assert again.enqueued == again.rerun_after_finish == [content_id] and again.recently_finished == []
    assert queue.job_ids == [job_id_for(content_id, ident)]
    assert "again after a job that ended lacking a model" in again.describe()
    # An explicit enqueue of ids (no database read behind it) keeps a finished job as it is.
    queue.remove(job_id_for(content_id, ident))
    Job.fetch(job_id_for(content_id, ident), connection, SERIALIZER).set_status(JobStatus.FINISHED)
    assert enqueue_ids(connection, db, [content_id]).recently_finished == [content_id]
