"""Every database has an identity, and a queue serves one database at a time (fast checks).

fakeredis and SQLite files here; the same scenarios with a real redis-server, real PostgreSQL and
real ``rq worker`` processes are in tests/faults/test_database_identity.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from rq import Retry, SimpleWorker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

import config
from db.identity import DatabaseNotInitialised, database_id
from db.migrate import upgrade
from db.models import Classification, Content, DatabaseIdentity
from db.session import describe, engine_for, session_scope
from jobs.binding import BINDING_KEY, Binding, QueueInUse, bind_queue, binding_of
from jobs.queue import (
    JOB_FUNCTION,
    QUEUE_NAME,
    classification_queue,
    enqueue_ids,
    failure_cool_down,
    job_id_for,
)
from jobs.registry import DATABASE_ID
from jobs.rq_seam import record_worker_database
from jobs.sweep import sweep
from tests.redis_trips import counted_round_trips

OTHER_QUEUE = "ml_classification_b"


@pytest.fixture
def connection() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield client
    client.close()


class Databases:
    """Migrated SQLite databases in the test's folder, disposed of at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.urls: list[str] = []

    def new(self, name: str) -> str:
        url = f"sqlite:///{self.folder / name}"
        upgrade(url)
        self.urls.append(url)
        return url

    def dispose(self) -> None:
        for url in self.urls:
            engine_for(url).dispose()


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[Databases]:
    made = Databases(tmp_path)
    yield made
    made.dispose()


def add_posts(url: str, count: int) -> list[int]:
    with session_scope(url) as session:
        contents = [
            Content(source="test", external_id=f"p{i}", text=f"stocks rally {i}") for i in range(count)
        ]
        session.add_all(contents)
        session.flush()
        return [content.id for content in contents]


# -- identity -------------------------------------------------------------------------------------


def test_db_upgrade_gives_each_database_one_identity_for_good(databases: Databases) -> None:
    first, second = databases.new("a.db"), databases.new("b.db")
    identity = database_id(first)

    upgrade(first)  # upgrading again keeps it

    assert database_id(first) == identity
    assert DATABASE_ID.fullmatch(identity) and len(identity) == 10
    assert database_id(second) != identity
    with session_scope(first) as session:
        assert session.scalar(select(func.count()).select_from(DatabaseIdentity)) == 1


def test_a_database_from_before_identities_says_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    try:
        with pytest.raises(DatabaseNotInitialised) as raised:
            database_id(url)
        assert (
            str(raised.value)
            == f"the database at {describe(url)} has no tables yet: run `volfefe db upgrade`"
        )
        upgrade(url)  # the migration gives it one
        assert DATABASE_ID.fullmatch(database_id(url))
    finally:
        engine_for(url).dispose()


def test_a_reset_database_is_a_new_database_to_a_process_that_knew_the_old_one(
    tmp_path: Path, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived process (a worker running the hourly sweep, the web process) sees the reset.

    The database is deleted and made again at the same URL; the process's engine has no connection
    left to the old one (as after PostgreSQL's DROP DATABASE, which needs every session gone).
    """
    import jobs.classify

    url = f"sqlite:///{tmp_path / 'volfefe.db'}"
    upgrade(url)
    add_posts(url, 2)
    old = database_id(url)
    old_report = sweep(connection, url)
    monkeypatch.setattr(jobs.classify, "classify_content", lambda content_id, _db: {"content_id": content_id})
    queue = classification_queue(connection)
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    assert old_report.database_id == old and old_report.enqueued == [1, 2]
    engine_for(url).dispose()
    (tmp_path / "volfefe.db").unlink()
    upgrade(url)
    posts = add_posts(url, 3)
    try:
        new = database_id(url)
        report = sweep(connection, url)
    finally:
        engine_for(url).dispose()

    assert new != old
    assert report.database_id == new
    assert report.enqueued == posts == [1, 2, 3], report.describe()
    assert report.recently_finished == []  # the old database's finished jobs 1 and 2 are not ours
    assert queue.job_ids == [job_id_for(content_id, new) for content_id in posts]
    assert binding_of(connection, QUEUE_NAME).database_id == new


# -- one queue, one database ----------------------------------------------------------------------


def test_the_first_database_binds_the_queue_and_others_are_refused_while_it_works(
    databases: Databases, connection: fakeredis.FakeRedis
) -> None:
    first, second = databases.new("first.db"), databases.new("second.db")
    enqueue_ids(connection, first, [1, 2, 3])
    first_id = database_id(first)
    keys_before = set(connection.keys("*"))

    with pytest.raises(QueueInUse) as refused:
        enqueue_ids(connection, second, [1, 2])

    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert describe(first) in message and first_id in message
    assert "3 job(s) waiting or running" in message
    assert f"VOLFEFE_QUEUE={QUEUE_NAME}_{database_id(second)}" in message
    assert binding_of(connection, QUEUE_NAME) == Binding(first_id, describe(first))
    assert set(connection.keys("*")) == keys_before  # nothing written for the second database
    assert classification_queue(connection).job_ids == [job_id_for(i, first_id) for i in (1, 2, 3)]


def test_a_queue_bound_to_this_database_costs_one_read_and_a_moved_url_is_rewritten(
    connection: fakeredis.FakeRedis,
) -> None:
    bind_queue(connection, QUEUE_NAME, "db-one", "postgresql://host-a/volfefe")

    with counted_round_trips() as sends:
        kept = bind_queue(connection, QUEUE_NAME, "db-one", "postgresql://host-a/volfefe")

    assert sends == [["HGETALL"]]
    assert kept == Binding("db-one", "postgresql://host-a/volfefe")
    # The same database reached at another address: the binding keeps it and names the new address.
    bind_queue(connection, QUEUE_NAME, "db-one", "postgresql://host-b/volfefe")
    assert binding_of(connection, QUEUE_NAME) == Binding("db-one", "postgresql://host-b/volfefe")


def test_a_live_worker_of_the_first_database_keeps_the_queue(
    databases: Databases, connection: fakeredis.FakeRedis
) -> None:
    first, second = databases.new("first.db"), databases.new("second.db")
    bind_queue(connection, QUEUE_NAME, database_id(first), describe(first))
    worker = SimpleWorker(
        [classification_queue(connection)], connection=connection, serializer=JSONSerializer
    )
    worker.register_birth()
    record_worker_database(worker, database_id(first))

    with pytest.raises(QueueInUse, match=r"0 job\(s\) waiting or running and 1 live worker\(s\)"):
        enqueue_ids(connection, second, [1])

    # Its worker gone (stopped, or its key expired after a crash), the queue is free again.
    worker.register_death()
    connection.delete(worker.key)
    assert enqueue_ids(connection, second, [1]).enqueued == [1]
    assert binding_of(connection, QUEUE_NAME).database_id == database_id(second)


def test_an_idle_database_hands_the_queue_over_and_its_ended_jobs_never_count(
    databases: Databases, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reset or second database, once the first is idle: its ids are its own, none taken."""
    import jobs.classify

    first, second = databases.new("first.db"), databases.new("second.db")
    queue = classification_queue(connection)
    first_report = enqueue_ids(connection, first, [1, 2, 3])
    monkeypatch.setattr(jobs.classify, "classify_content", lambda content_id, _db: {"content_id": content_id})
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    assert {Job.fetch(i, connection, JSONSerializer).get_status() for i in first_report.job_ids} == {
        JobStatus.FINISHED
    }

    report = enqueue_ids(connection, second, [1, 2, 3, 4])

    second_id = database_id(second)
    assert report.database_id == second_id
    assert report.enqueued == [1, 2, 3, 4]
    assert report.recently_finished == report.already_pending == report.cooling_down == []
    assert report.job_ids == [job_id_for(i, second_id) for i in (1, 2, 3, 4)]
    assert not set(report.job_ids) & set(first_report.job_ids)
    assert binding_of(connection, QUEUE_NAME) == Binding(second_id, describe(second))


def test_databases_on_their_own_queues_work_side_by_side(
    databases: Databases, connection: fakeredis.FakeRedis
) -> None:
    first, second = databases.new("first.db"), databases.new("second.db")
    one = enqueue_ids(connection, first, [1, 2])
    two = enqueue_ids(connection, second, [1, 2], queue_name=OTHER_QUEUE)
    again = enqueue_ids(connection, first, [3])

    assert one.enqueued == two.enqueued == [1, 2] and again.enqueued == [3]
    assert classification_queue(connection).job_ids == [*one.job_ids, *again.job_ids]
    assert classification_queue(connection, OTHER_QUEUE).job_ids == two.job_ids
    assert binding_of(connection, OTHER_QUEUE).database_id == database_id(second)
    assert binding_of(connection, QUEUE_NAME).database_id == database_id(first)
    assert connection.exists(BINDING_KEY.format(queue_name=OTHER_QUEUE))


def test_volfefe_queue_names_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOLFEFE_QUEUE", OTHER_QUEUE)
    config.settings.cache_clear()
    try:
        assert classification_queue(fakeredis.FakeRedis()).name == OTHER_QUEUE
    finally:
        config.settings.cache_clear()


# -- a job of another database --------------------------------------------------------------------


def test_rqs_own_worker_fails_a_job_of_another_database_at_once_and_touches_nothing(
    databases: Databases, connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rq worker ml_classification`` without our worker class (the default setup must keep working):
    the job for database B, pushed onto A's queue, is refused by the job itself, never retried (a retry
    cannot change its database), and cools down 0 s so that B's next sweep enqueues it again at once."""
    here, elsewhere = databases.new("a.db"), databases.new("b.db")
    (content_id,) = add_posts(here, 1)
    add_posts(elsewhere, 1)
    monkeypatch.setenv("DATABASE_URL", here)
    config.settings.cache_clear()
    try:
        queue = classification_queue(connection)
        other = database_id(elsewhere)
        job_id = job_id_for(content_id, other)
        # Pushed by hand, with the policy enqueue_ids gives its jobs (two retries).
        queue.enqueue(JOB_FUNCTION, content_id, other, job_id=job_id, retry=Retry(max=2, interval=[5, 30]))
        SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    finally:
        config.settings.cache_clear()

    job = Job.fetch(job_id, connection, JSONSerializer)
    assert job.get_status() == JobStatus.FAILED, "a refused job must not be scheduled for a retry"
    assert queue.failed_job_registry.get_job_ids() == [job_id]
    assert queue.scheduled_job_registry.get_job_ids() == []
    assert f"enqueued for database {other}" in job.latest_result().exc_string
    assert failure_cool_down(job) == 0
    with session_scope(here) as session:
        assert session.scalar(select(func.count()).select_from(Classification)) == 0
        assert session.get(Content, content_id).skip_reason is None
