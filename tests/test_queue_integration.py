"""The queue end to end: a real redis-server, a real PostgreSQL (and SQLite), real ``rq worker`` processes.

Workers are ``rq worker ml_classification -w workers.FinbertWorker --with-scheduler`` with the tiny
test model (tests/processes.py); the enqueuer, scheduler and status commands run as subprocesses
where their command line is what is tested. Every wait polls, with generous timeouts: the machine
has two cores and other suites may run at the same time.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from db.identity import database_id
from db.migrate import upgrade
from db.models import SENTIMENTS, Classification, Consensus, Content, ContentEntities
from db.queries import unclassified_ids
from db.session import engine_for, session_scope
from jobs.monitoring import live_workers, queue_counts
from jobs.outcomes import CLASSIFIED, CONTENT_NOT_FOUND, NO_TEXT_TO_CLASSIFY, SKIPPED
from jobs.queue import (
    ENQUEUE_CHUNK,
    FAILURE_TTL,
    JOB_FUNCTION,
    MAX_ATTEMPTS,
    POST_FAILURE_COOL_DOWN,
    QUEUE_NAME,
    RETRY_INTERVALS,
    classification_queue,
    enqueue_ids,
    failure_cool_down,
    job_id_for,
)
from jobs.sweep import sweep
from tests.processes import READY_LINE, READY_TIMEOUT, WorkerProcess, wait_for

PROJECT = Path(__file__).resolve().parents[1]
VOLFEFE = str(Path(sys.executable).with_name("volfefe"))
#: seconds for a set of jobs to end (the two-core machine may be shared with other suites).
JOBS_TIMEOUT = 120.0
#: seconds for a subprocess command.
COMMAND_TIMEOUT = 120.0
FINAL = {JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value}

#: posts with no visible text: the job finishes as skipped (no_text_to_classify), never retried.
NO_TEXT = ["", "   \n\t \r\n ", "<p><br/></p><div> </div><img src='chart.png'><script>sell()</script>"]
_VOCABULARY = (
    "stocks rally on strong earnings shares fall after weak guidance market markets the a "
    "profit loss growth outlook revenue beat miss upgrade downgrade bank rates inflation"
)
WORDS = _VOCABULARY.split()

_external_ids = itertools.count()


# -- helpers --------------------------------------------------------------------------------------


def headline(index: int, words: int | None = None) -> str:
    """A deterministic headline of ``words`` words (3 to 14 by default), distinct per index."""
    rng = random.Random(index)
    count = words if words is not None else rng.randint(3, 14)
    return " ".join(rng.choice(WORDS) for _ in range(count)) + f" #{index}"


def add_contents(url: str, texts: list[str]) -> list[int]:
    with session_scope(url) as session:
        contents = [
            Content(source="test", external_id=f"q{next(_external_ids)}", text=text) for text in texts
        ]
        session.add_all(contents)
        session.flush()
        return [content.id for content in contents]


def classification_counts(url: str) -> dict[int, int]:
    """Rows in classifications per content id (SQL count)."""
    with session_scope(url) as session:
        rows = session.execute(
            select(Classification.content_id, func.count()).group_by(Classification.content_id)
        )
        return {content_id: count for content_id, count in rows}


def classifications(url: str) -> dict[int, Classification]:
    with session_scope(url) as session:
        return {row.content_id: row for row in session.scalars(select(Classification))}


def skip_reasons(url: str) -> dict[int, str | None]:
    with session_scope(url) as session:
        return {key: value for key, value in session.execute(select(Content.id, Content.skip_reason))}


def statuses(connection: Redis, job_ids: list[str]) -> dict[str, str | None]:
    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hget(Job.key_for(job_id), "status")
        replies = pipeline.execute()
    return {
        job_id: (reply.decode() if reply else None) for job_id, reply in zip(job_ids, replies, strict=True)
    }


def wait_statuses(
    connection: Redis,
    job_ids: list[str],
    accept: Callable[[str, str | None], bool] = lambda _job_id, status: status in FINAL,
    timeout: float = JOBS_TIMEOUT,
    what: str = "every job to reach a final state",
) -> dict[str, str | None]:
    """Poll until ``accept(job_id, status)`` holds for every job; return the statuses."""
    seen: dict[str, str | None] = {}

    def done() -> bool:
        seen.update(statuses(connection, job_ids))
        return all(accept(job_id, seen[job_id]) for job_id in job_ids)

    try:
        wait_for(done, timeout, interval=0.2, what=what)
    except AssertionError as error:
        pending = Counter(status for job_id, status in seen.items() if not accept(job_id, status))
        raise AssertionError(f"{error}; not there yet, by status: {dict(pending)}") from None
    return seen


def fetch(connection: Redis, database_url: str, content_id: int) -> Job:
    """The job of ``content_id`` of the database at ``database_url`` (JSON, as every job of ours)."""
    return Job.fetch(
        job_id_for(content_id, database_id(database_url)), connection=connection, serializer=JSONSerializer
    )


def job_ids_of(database_url: str, content_ids: list[int]) -> list[str]:
    identity = database_id(database_url)
    return [job_id_for(content_id, identity) for content_id in content_ids]


def worker_name(worker: WorkerProcess) -> str:
    """The RQ name of ``worker``, from its log ("Worker <name>: started with PID <pid>")."""
    found: list[str] = []

    def logged() -> bool:
        match = re.search(rf"Worker (\S+): started with PID {worker.pid}\b", worker.log())
        if match:
            found.append(match.group(1))
        return bool(match)

    wait_for(logged, 30, what=f"worker {worker.pid} to log its name")
    return found[0]


def command_env(redis_url: str, database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "VOLFEFE_DATA_DIR": str(tmp_path / "var"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def rq_keys(connection: Redis) -> set[str]:
    return {key.decode() for key in connection.scan_iter("rq:*")}


def pg_conninfo(postgres_server, url: str) -> str:
    return postgres_server.conninfo(make_url(url).database)


def add_failing_store_trigger(postgres_server, url: str, content_id: int) -> None:
    """Every INSERT of a classification for ``content_id`` raises, in bulk or alone, at every attempt."""
    with psycopg.connect(pg_conninfo(postgres_server, url), autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE FUNCTION refuse_store() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.content_id = {int(content_id)} THEN
                    RAISE EXCEPTION 'refusing to store content %', NEW.content_id;
                END IF;
                RETURN NEW;
            END $$
            """
        )
        conn.execute(
            "CREATE TRIGGER refuse_store BEFORE INSERT ON classifications "
            "FOR EACH ROW EXECUTE FUNCTION refuse_store()"
        )


def drop_failing_store_trigger(postgres_server, url: str) -> None:
    with psycopg.connect(pg_conninfo(postgres_server, url), autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse_store ON classifications")


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def pg_db(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; the test process's engine is disposed afterwards."""
    upgrade(postgres_url)
    yield postgres_url
    engine_for(postgres_url).dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[str]:
    upgrade(sqlite_url)
    yield sqlite_url
    engine_for(sqlite_url).dispose()


class Workers:
    """Starts real worker processes in parallel and waits until each has loaded its model."""

    def __init__(self, tmp_path: Path, model_dir: Path) -> None:
        self.tmp_path = tmp_path
        self.model_dir = model_dir
        self.started: list[WorkerProcess] = []

    def __call__(
        self, redis_url: str, database_url: str, count: int = 1, env: dict[str, str] | None = None
    ) -> list[WorkerProcess]:
        """``count`` workers on the same Redis and database."""
        return self.each([(redis_url, database_url, env)] * count)

    def each(self, specs: list[tuple[str, str, dict[str, str] | None]]) -> list[WorkerProcess]:
        """One worker per ``(redis_url, database_url, env)``."""
        workers = [
            WorkerProcess(
                redis,
                database,
                self.model_dir,
                self.tmp_path / f"worker-{len(self.started) + i}.log",
                env=env,
            )
            for i, (redis, database, env) in enumerate(specs)
        ]
        for worker in workers:
            self.started.append(worker)
            worker.start(wait_ready=False)
        for worker in workers:
            wait_for(
                lambda worker=worker: READY_LINE in worker.log() or not worker.running,
                READY_TIMEOUT * len(workers),
                what=f"worker {worker.pid} to load its model",
            )
            assert worker.running, f"worker exited while starting:\n{worker.log()[-3000:]}"
        return workers

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def start_workers(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Workers]:
    """Every worker started through this fixture is stopped (SIGTERM, then SIGKILL) when the test
    ends, whatever happens in it."""
    workers = Workers(tmp_path, tiny_model_dir)
    try:
        yield workers
    finally:
        workers.stop_all()


# -- many contents, two workers -------------------------------------------------------------------


@pytest.mark.integration
def test_two_workers_end_every_job_once_and_skip_without_retry(
    pg_db: str, redis_url: str, connection: Redis, start_workers
) -> None:
    texts = [headline(i) for i in range(170)]
    texts += [NO_TEXT[i % len(NO_TEXT)] for i in range(30)]
    random.Random(7).shuffle(texts)
    ids = add_contents(pg_db, texts)
    with_text = {content_id for content_id, text in zip(ids, texts, strict=True) if text not in NO_TEXT}
    no_text = set(ids) - with_text
    missing = [max(ids) + 1000 + k for k in range(10)]
    assert len(with_text) == 170 and len(no_text) == 30

    workers = start_workers(
        redis_url, pg_db, count=2, env={"FINBERT_BATCH_SIZE": "16", "WORKER_BATCH_JOBS": "16"}
    )
    report = enqueue_ids(connection, pg_db, [*ids, *missing])
    assert sorted(report.enqueued) == sorted([*ids, *missing])
    assert report.database_id == database_id(pg_db)
    job_ids = report.job_ids
    assert len(job_ids) == 210

    final = wait_statuses(connection, job_ids)

    assert Counter(final.values()) == {"finished": 210}
    # Every content with text: exactly one classification row, its consensus and its entities.
    assert classification_counts(pg_db) == dict.fromkeys(with_text, 1)
    with session_scope(pg_db) as session:
        agreed = set(session.scalars(select(Consensus.content_id)))
        linked = set(session.scalars(select(ContentEntities.content_id)))
    assert agreed == linked == with_text
    # Each job ran once (one result, no retry used) and says what happened.
    ran_on: set[str] = set()
    for job in Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer):
        assert job is not None
        content_id, job_database = job.args
        assert job_database == report.database_id
        assert Result.count(job) == 1, job.id
        assert job.retries_left == MAX_ATTEMPTS - 1, job.id
        result = job.latest_result()
        assert result is not None and result.type == Result.Type.SUCCESSFUL
        ran_on.add(result.worker_name)
        value = job.return_value()
        if content_id in with_text:
            assert value["status"] == CLASSIFIED and value["sentiment"] in SENTIMENTS, value
        elif content_id in no_text:
            assert value == {"content_id": content_id, "status": SKIPPED, "reason": NO_TEXT_TO_CLASSIFY}
        else:
            assert value == {"content_id": content_id, "status": SKIPPED, "reason": CONTENT_NOT_FOUND}
    assert ran_on == {worker_name(worker) for worker in workers}, "both workers should have taken jobs"
    # Skipped contents are marked, and the sweep passes over them.
    reasons = skip_reasons(pg_db)
    assert {content_id for content_id, reason in reasons.items() if reason} == no_text
    assert set(reasons.values()) == {None, NO_TEXT_TO_CLASSIFY}
    with session_scope(pg_db) as session:
        assert unclassified_ids(session) == []
    again = sweep(connection, pg_db)
    assert again.job_ids == []
    assert queue_counts(connection).queued == 0


# -- retries --------------------------------------------------------------------------------------


def allow_connections(postgres_server, name: str, allowed: bool) -> None:
    """Open or close database ``name`` to new sessions (superusers too), ending its sessions on closing."""
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
    if not allowed:
        postgres_server.terminate_connections(name)


@pytest.mark.integration
def test_an_unavailable_database_costs_no_attempt(
    postgres_server, redis_url: str, connection: Redis, start_workers
) -> None:
    """The database is unavailable at the worker's start, then again in the middle of a batch.

    Rewritten for workers that wait out outages: before, the first attempt failed and a retry (5 s
    later) succeeded; now the worker waits for its database, and a batch whose database fails goes
    back to the queue unrun, without using an attempt, until the database answers again.
    """
    name = f"t_late_{uuid.uuid4().hex[:10]}"
    url = postgres_server.url(name)
    workers: list[WorkerProcess] = []
    try:
        # 1. The database does not exist yet: the worker waits for it (no exit, no job taken).
        worker = WorkerProcess(
            redis_url,
            url,
            start_workers.model_dir,
            start_workers.tmp_path / "late-worker.log",
            env={"FINBERT_BATCH_WAIT_MS": "3000"},
        )
        start_workers.started.append(worker)
        workers.append(worker.start(wait_ready=False))
        wait_for(
            lambda: "is unavailable" in worker.log() or not worker.running,
            READY_TIMEOUT,
            what="the worker to find its database unavailable",
        )
        assert worker.running, worker.log()[-3000:]
        assert f'database "{name}" does not exist' in worker.log()
        assert READY_LINE not in worker.log()

        postgres_server.create_database(name)
        upgrade(url)
        assert add_contents(url, [headline(1), headline(2)]) == [1, 2]
        wait_for(lambda: READY_LINE in worker.log(), 60, what="the worker to start once its database exists")
        first = enqueue_ids(connection, url, [1, 2])
        assert set(wait_statuses(connection, first.job_ids, timeout=60).values()) == {"finished"}

        # 2. The batch is taken (the worker waits 3 s for it to fill), then the database closes.
        assert add_contents(url, [headline(3), headline(4)]) == [3, 4]
        queue = classification_queue(connection)
        second = enqueue_ids(connection, url, [3, 4])
        wait_for(
            lambda: connection.llen(queue.key) == 0 and connection.llen(queue.intermediate_queue_key) == 2,
            10,
            interval=0.01,
            what="the worker to take the batch",
        )
        allow_connections(postgres_server, name, False)
        try:
            wait_for(
                lambda: "handed 2 jobs back to the queue" in worker.log(),
                30,
                what="the worker to hand the batch back",
            )
            assert set(statuses(connection, second.job_ids).values()) == {JobStatus.QUEUED.value}
            assert connection.lrange(queue.key, 0, -1) == [job_id.encode() for job_id in second.job_ids]
            assert connection.llen(queue.intermediate_queue_key) == 0
            assert connection.zcard(queue.started_job_registry.key) == 0
        finally:
            allow_connections(postgres_server, name, True)
        final = wait_statuses(connection, second.job_ids, timeout=60)

        assert set(final.values()) == {"finished"}
        assert "answers again" in worker.log()
        assert classification_counts(url) == {1: 1, 2: 1, 3: 1, 4: 1}
        for content_id in (1, 2, 3, 4):
            job = fetch(connection, url, content_id)
            assert job.retries_left == MAX_ATTEMPTS - 1, content_id  # no attempt used
            assert Result.count(job) == 1, content_id  # one execution ended it
            assert job.return_value()["status"] == CLASSIFIED
    finally:
        for worker in workers:
            worker.stop()
        engine_for(url).dispose()
        postgres_server.drop_database(name)


@pytest.mark.integration
def test_one_batch_mixing_outcomes_and_a_permanent_failure(
    postgres_server, pg_db: str, redis_url: str, connection: Redis, start_workers
) -> None:
    """One batch of 32: good, missing, empty and one content whose store always fails.

    Each job ends in its own state; the failing one is retried alone (5 s, then 30 s), ends in the
    FailedJobRegistry after exactly three attempts with its traceback, and a requeue (after the
    cause is fixed) classifies it. About 40 s: the retry intervals are the product's.
    """
    good = add_contents(pg_db, [headline(100 + i) for i in range(24)])
    empty = add_contents(pg_db, ["", "  \n ", "<br><p></p>"])
    (bad,) = add_contents(pg_db, [headline(999)])
    missing = [bad + 500, bad + 501, bad + 502, bad + 503]
    add_failing_store_trigger(postgres_server, pg_db, bad)
    order = [
        *good[:12],
        missing[0],
        empty[0],
        bad,
        missing[1],
        empty[1],
        *good[12:],
        missing[2],
        empty[2],
        missing[3],
    ]
    assert len(order) == 32
    report = enqueue_ids(connection, pg_db, order)  # all waiting before the worker starts
    assert report.enqueued == order
    neighbours = [content_id for content_id in order if content_id != bad]

    (worker,) = start_workers(redis_url, pg_db, env={"FINBERT_BATCH_SIZE": "32", "WORKER_BATCH_JOBS": "32"})
    bad_job_id = job_id_for(bad, report.database_id)

    def attempts() -> int:
        """Executions of the failing job that raised: the worker counts them, and logs each traceback."""
        (info,) = live_workers(connection)
        logged = worker.log().count(f"job {bad_job_id}: exception raised while executing")
        assert info.failed_jobs == logged, worker.log()[-3000:]
        return logged

    # First pass: every neighbour ends; the failing job waits for its first retry.
    wait_statuses(
        connection,
        report.job_ids,
        accept=lambda job_id, status: status == "scheduled" if job_id == bad_job_id else status in FINAL,
        timeout=JOBS_TIMEOUT,
        what="the batch to run once",
    )
    assert attempts() == 1
    assert fetch(connection, pg_db, bad).retries_left == MAX_ATTEMPTS - 2
    assert "finished 31 jobs in one batch" in worker.log(), "the 32 jobs should have run as one batch"

    final = wait_statuses(connection, [bad_job_id], timeout=JOBS_TIMEOUT, what="the failing job to fail")

    assert final == {bad_job_id: "failed"}
    job = fetch(connection, pg_db, bad)
    queue = classification_queue(connection)
    assert queue.failed_job_registry.get_job_ids() == [bad_job_id]
    assert attempts() == MAX_ATTEMPTS == 3
    assert job.retries_left == 0
    # The attempts were RETRY_INTERVALS apart (the log's clock has whole seconds).
    clock = re.findall(rf"^(\d\d):(\d\d):(\d\d) .*job {bad_job_id}: exception raised", worker.log(), re.M)
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in clock]
    gaps = [(later - earlier) % 86400 for earlier, later in itertools.pairwise(seconds)]
    assert len(gaps) == 2 and gaps[0] >= RETRY_INTERVALS[0] - 1 and gaps[1] >= RETRY_INTERVALS[1] - 1, gaps
    # RQ 3.0 writes a Result only for the execution that ends the job, none for a retried one.
    assert [result.type for result in Result.all(job)] == [Result.Type.FAILED]
    latest = job.latest_result()
    assert latest is not None and latest.type == Result.Type.FAILED
    assert "Traceback" in latest.exc_string
    assert f"refusing to store content {bad}" in latest.exc_string
    # The neighbours: each ran once, in its own right state, untouched by the failures.
    assert classification_counts(pg_db) == dict.fromkeys(good, 1)
    for content_id in neighbours:
        neighbour = fetch(connection, pg_db, content_id)
        assert neighbour.get_status() == JobStatus.FINISHED, content_id
        assert Result.count(neighbour) == 1 and neighbour.retries_left == MAX_ATTEMPTS - 1, content_id
        value = neighbour.return_value()
        if content_id in good:
            assert value["status"] == CLASSIFIED
        else:
            reason = NO_TEXT_TO_CLASSIFY if content_id in empty else CONTENT_NOT_FOUND
            assert value == {"content_id": content_id, "status": SKIPPED, "reason": reason}
    # While it cools down, neither a sweep nor an explicit enqueue doubles it.
    assert 0 < connection.ttl(job.key) <= FAILURE_TTL
    assert failure_cool_down(job) == POST_FAILURE_COOL_DOWN  # the post failed on its own: a day
    assert sweep(connection, pg_db).cooling_down == [bad]
    assert queue.count == 0

    # `rq requeue`, once the cause is fixed: it runs again and is classified.
    drop_failing_store_trigger(postgres_server, pg_db)
    queue.failed_job_registry.requeue(job.id)
    assert queue.failed_job_registry.get_job_ids() == []
    assert fetch(connection, pg_db, bad).get_status() in {
        JobStatus.QUEUED,
        JobStatus.STARTED,
        JobStatus.FINISHED,
    }
    assert wait_statuses(connection, [job.id], timeout=60) == {job.id: "finished"}
    assert classification_counts(pg_db) == dict.fromkeys([*good, bad], 1)
    assert fetch(connection, pg_db, bad).return_value()["status"] == CLASSIFIED


@pytest.mark.integration
def test_a_job_that_depends_on_a_classification_job_runs_after_it(
    pg_db: str, redis_url: str, connection: Redis, start_workers
) -> None:
    """As with RQ's own success path (a plain SimpleWorker runs the dependent at once).

    The dependent is a classification job: a job of another function (``math.sqrt`` before the
    allow-list) is refused unrun now, which the end of this test shows.
    """
    parent, child = add_contents(pg_db, [headline(1), headline(2)])
    queue = classification_queue(connection)
    report = enqueue_ids(connection, pg_db, [parent])
    ident = report.database_id
    after = queue.enqueue(
        JOB_FUNCTION, child, ident, job_id=job_id_for(child, ident), depends_on=report.job_ids[0]
    )
    foreign = queue.enqueue("math.sqrt", 16, job_id="after-classification", depends_on=report.job_ids[0])
    assert after.get_status() == foreign.get_status() == JobStatus.DEFERRED
    start_workers(redis_url, pg_db)
    assert wait_statuses(connection, report.job_ids, timeout=60) == {report.job_ids[0]: "finished"}

    # RQ enqueues the dependents as it finishes the parent: a few seconds is plenty.
    final = wait_statuses(connection, [after.id, foreign.id], timeout=5, what="the dependent jobs to end")

    assert final == {after.id: "finished", foreign.id: "failed"}
    assert fetch(connection, pg_db, child).return_value()["status"] == CLASSIFIED
    assert classification_counts(pg_db) == {parent: 1, child: 1}
    refused = Job.fetch(foreign.id, connection=connection, serializer=JSONSerializer)
    assert refused.return_value() is None
    assert "refused: function 'math.sqrt' is not a job of this project" in refused.latest_result().exc_string
    assert queue.failed_job_registry.get_job_ids() == [foreign.id]


# -- concurrent enqueuers -------------------------------------------------------------------------


def _enqueue_racer(redis_url: str, database_url: str, ids: list[int], seed: int, barrier, results) -> None:
    """One enqueuing process: wait for the others, then enqueue ``ids`` in its own order."""
    from redis import Redis

    from jobs.queue import enqueue_ids

    order = list(ids)
    random.Random(seed).shuffle(order)
    client = Redis.from_url(redis_url)
    client.ping()
    barrier.wait(timeout=60)
    results.put(asdict(enqueue_ids(client, database_url, order)))


@pytest.mark.integration
def test_four_processes_enqueueing_the_same_ids_make_one_job_each(
    sqlite_db: str, redis_url: str, connection: Redis
) -> None:
    # Several of enqueue_ids's chunks per process, each in its own order: the processes' chunks overlap.
    ids = list(range(1, 4 * ENQUEUE_CHUNK + 1))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(target=_enqueue_racer, args=(redis_url, sqlite_db, ids, seed, barrier, results))
        for seed in range(4)
    ]
    try:
        for process in processes:
            process.start()
        reports = [results.get(timeout=COMMAND_TIMEOUT) for _ in processes]
        for process in processes:
            process.join(timeout=COMMAND_TIMEOUT)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()

    enqueued = [content_id for report in reports for content_id in report["enqueued"]]
    assert sorted(enqueued) == ids, "each id enqueued by exactly one process"
    for report in reports:
        assert sorted(report["enqueued"] + report["already_pending"]) == ids
        assert report["recently_finished"] == report["cooling_down"] == report["retried_after_failure"] == []
        assert report["database_id"] == database_id(sqlite_db)
    assert sum(1 for report in reports if report["enqueued"]) >= 2, "the processes did not race"
    # Exactly one job per id exists: the queue holds each once, no registry holds any.
    queue = classification_queue(connection)
    waiting = [job_id.decode() for job_id in connection.lrange(queue.key, 0, -1)]
    assert len(waiting) == len(set(waiting)) == len(ids)
    assert set(waiting) == set(job_ids_of(sqlite_db, ids))
    counts = queue_counts(connection)
    assert counts.queued == len(ids)
    assert counts.started == counts.finished == counts.failed == counts.scheduled == counts.deferred == 0
    assert len(list(connection.scan_iter("rq:job:*", count=1000))) == len(ids)


# -- sweep and scheduler --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::FutureWarning")  # crontab, via rq-scheduler
def test_content_imported_later_is_picked_up_by_the_sweep_on_sqlite(
    sqlite_db: str, redis_url: str, connection: Redis, start_workers, tmp_path: Path
) -> None:
    """SQLite shared by the test, a worker, ``scheduler.py --once`` and the registered hourly sweep."""
    from rq_scheduler import Scheduler

    import scheduler
    from db.importer import import_posts

    def import_file(name: str, texts: list[str]) -> None:
        path = tmp_path / name
        path.write_text(
            "".join(json.dumps({"external_id": f"{name}-{i}", "text": t}) + "\n" for i, t in enumerate(texts))
        )
        with session_scope(sqlite_db) as session:
            assert import_posts(session, path).inserted == len(texts)

    env = command_env(redis_url, sqlite_db, tmp_path)
    start_workers(redis_url, sqlite_db)
    import_file("first.jsonl", [headline(i) for i in range(3)])

    first = run_command([sys.executable, "scheduler.py", "--once"], env)
    assert first.returncode == 0, first.stderr
    assert "sweep: enqueued 3," in first.stdout
    wait_statuses(connection, job_ids_of(sqlite_db, [1, 2, 3]))
    assert classification_counts(sqlite_db) == {1: 1, 2: 1, 3: 1}

    import_file("second.jsonl", [headline(10), headline(11)])
    second = run_command([sys.executable, "scheduler.py", "--once"], env)
    assert second.returncode == 0, second.stderr
    assert "sweep: enqueued 2, already waiting or running 0, finished in the last 10 min 0" in second.stdout
    wait_statuses(connection, job_ids_of(sqlite_db, [4, 5]))
    assert classification_counts(sqlite_db) == dict.fromkeys([1, 2, 3, 4, 5], 1)

    # The hour strikes: rq-scheduler moves the registered sweep onto the queue, the worker runs it.
    import_file("third.jsonl", [headline(20)])
    registered = scheduler.register_sweep(connection)
    sweep_job = Job.fetch(scheduler.SWEEP_JOB_ID, connection=connection, serializer=JSONSerializer)
    registered.enqueue_job(sweep_job)
    wait_statuses(connection, [scheduler.SWEEP_JOB_ID], what="the hourly sweep job")
    swept = Job.fetch(scheduler.SWEEP_JOB_ID, connection=connection, serializer=JSONSerializer)
    assert swept.return_value() == {"enqueued": 1, "already_pending": 0, "cooling_down": 0, "backfill": 0}
    wait_statuses(connection, job_ids_of(sqlite_db, [6]))
    assert classification_counts(sqlite_db) == dict.fromkeys([1, 2, 3, 4, 5, 6], 1)
    assert connection.zrange(Scheduler.scheduled_jobs_key, 0, -1) == [scheduler.SWEEP_JOB_ID.encode()]


# test_registering_the_sweep_twice_leaves_one_cron_entry and test_scheduler_prints_no_crontab_future_warning
# live in tests/test_scheduler.py, with the scheduler's other tests.


# -- the warm worker ------------------------------------------------------------------------------


@pytest.mark.integration
def test_one_worker_loads_the_model_once_for_many_jobs(
    pg_db: str, redis_url: str, connection: Redis, start_workers
) -> None:
    add_contents(pg_db, [headline(i) for i in range(100)])
    (worker,) = start_workers(redis_url, pg_db, env={"FINBERT_BATCH_SIZE": "8", "WORKER_BATCH_JOBS": "8"})

    report = sweep(connection, pg_db)
    assert len(report.enqueued) == 100
    wait_statuses(connection, report.job_ids)

    assert classification_counts(pg_db) == dict.fromkeys(report.enqueued, 1)
    assert len(re.findall(r"Worker: model .* loaded in ", worker.log())) == 1
    name = worker_name(worker)
    assert {fetch(connection, pg_db, i).latest_result().worker_name for i in report.enqueued} == {name}
    (info,) = live_workers(connection)
    assert info.name == name and info.pid == worker.pid
    assert info.successful_jobs == 100 and info.failed_jobs == 0


# -- enqueue.py -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_enqueue_dry_run_lists_and_enqueues_nothing(
    pg_db: str, redis_url: str, connection: Redis, tmp_path: Path
) -> None:
    long_text = "Stocks rally   on strong earnings\nas the market " + "climbs " * 20
    ids = add_contents(pg_db, [long_text, "Shares fall after weak guidance", ""])
    env = command_env(redis_url, pg_db, tmp_path)

    listed = run_command([sys.executable, "enqueue.py", "--all", "--dry-run"], env)

    assert listed.returncode == 0, listed.stderr
    collapsed = " ".join(long_text.split())
    assert listed.stdout.splitlines() == [
        f"{ids[0]}\t{collapsed[:60]}",
        f"{ids[1]}\tShares fall after weak guidance",
        f"{ids[2]}\t",
    ]
    assert "dry run: 3 contents would be enqueued" in listed.stderr

    by_id = run_command([sys.executable, "enqueue.py", "--ids", f"{ids[1]},424242", "--dry-run"], env)
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout.splitlines() == [
        f"{ids[1]}\tShares fall after weak guidance",
        "424242\t(no such content)",
    ]
    assert rq_keys(connection) == set()


@pytest.mark.integration
@pytest.mark.parametrize(("ids", "bad"), [("1,x", "x"), ("0,1", "0"), ("1,,2", ""), ("-3", "-3")])
def test_enqueue_rejects_a_bad_id_list(
    ids: str, bad: str, redis_url: str, connection: Redis, tmp_path: Path
) -> None:
    result = run_command(
        [sys.executable, "enqueue.py", f"--ids={ids}"], command_env(redis_url, "sqlite:///x.db", tmp_path)
    )

    assert result.returncode == 2
    assert f"argument --ids: '{bad}' is not a content id" in result.stderr
    assert "Traceback" not in result.stderr
    assert rq_keys(connection) == set()


@pytest.mark.integration
@pytest.mark.parametrize("unreachable", ["redis", "database"])
def test_enqueue_names_an_unreachable_service_in_one_line(
    unreachable: str, redis_url: str, tmp_path: Path
) -> None:
    if unreachable == "redis":
        env = command_env("redis://127.0.0.1:1/0", "sqlite:///x.db", tmp_path)
        args = ["--ids", "1,2"]
        expected = ("Redis", "redis://127.0.0.1:1")
    else:
        env = command_env(redis_url, "postgresql+psycopg://postgres@127.0.0.1:1/nowhere", tmp_path)
        args = ["--all"]
        expected = ("database", "127.0.0.1:1/nowhere")

    result = run_command([sys.executable, "enqueue.py", *args], env)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("enqueue.py: error: ")
    for word in expected:
        assert word in lines[0]


@pytest.mark.integration
def test_enqueue_all_wait_prints_the_summary(
    pg_db: str, redis_url: str, connection: Redis, start_workers, tmp_path: Path
) -> None:
    ids = add_contents(pg_db, [headline(i) for i in range(6)] + ["", "<p> </p>"])
    start_workers(redis_url, pg_db)

    result = run_command(
        [sys.executable, "enqueue.py", "--all", "--wait"], command_env(redis_url, pg_db, tmp_path)
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("enqueued 8, already waiting or running 0")
    match = re.fullmatch(
        r"total 8, classified 6, skipped 2, failed 0 in (\d+\.\d)s \((\d+\.\d) items/s\)", lines[1]
    )
    assert match, lines[1]
    assert float(match.group(2)) > 0
    assert "  skipped no_text_to_classify: 2" in lines
    (sentiment_line,) = [line for line in lines if line.startswith("  sentiments: ")]
    counts = dict(part.rsplit(" ", 1) for part in sentiment_line.removeprefix("  sentiments: ").split(", "))
    assert set(counts) <= set(SENTIMENTS) and sum(int(v) for v in counts.values()) == 6
    assert classification_counts(pg_db) == dict.fromkeys(ids[:6], 1)


# -- volfefe status -------------------------------------------------------------------------------


#: locks a live worker takes and drops on its own timer (maintenance, scheduler): not the queue's state.
TRANSIENT_KEYS = re.compile(r"^rq:(clean_registries:|clean_groups|scheduler-lock:)")


def registry_snapshot(connection: Redis) -> dict[str, object]:
    """Every rq key with its type, and the full content of each list, set and sorted set."""
    snapshot: dict[str, object] = {}
    for raw in sorted(connection.scan_iter("rq:*")):
        key = raw.decode()
        if TRANSIENT_KEYS.match(key):
            continue
        kind = connection.type(raw).decode()
        if kind == "zset":
            snapshot[key] = ("zset", connection.zcard(raw), connection.zrange(raw, 0, -1, withscores=True))
        elif kind == "list":
            snapshot[key] = ("list", connection.llen(raw), connection.lrange(raw, 0, -1))
        elif kind == "set":
            snapshot[key] = ("set", sorted(connection.smembers(raw)))
        else:
            snapshot[key] = (kind,)  # hashes (jobs, workers' heartbeats), strings, streams: presence only
    return snapshot


@pytest.mark.integration
def test_status_reports_queue_workers_and_database_without_changing_anything(
    pg_db: str, redis_url: str, connection: Redis, start_workers, tmp_path: Path
) -> None:
    ids = add_contents(pg_db, [headline(1), headline(2), headline(3), "   "])
    (worker,) = start_workers(redis_url, pg_db)
    name = worker_name(worker)
    wait_for(lambda: [w.name for w in live_workers(connection)] == [name], 30, what="the worker to register")
    queue = classification_queue(connection)
    report = enqueue_ids(connection, pg_db, ids)
    ident = report.database_id
    # One job of each other state: failed (refused unrun: not a job of this project), scheduled (an
    # hour ahead), deferred (behind it).
    broken = queue.enqueue("math.sqrt", -1, job_id="status-probe-failing")
    later = queue.enqueue_in(
        timedelta(hours=1), JOB_FUNCTION, 424242, ident, job_id=job_id_for(424242, ident)
    )
    queue.enqueue(JOB_FUNCTION, 434343, ident, job_id=job_id_for(434343, ident), depends_on=later)
    wait_statuses(connection, [*report.job_ids, broken.id])
    wait_for(lambda: live_workers(connection)[0].state == "idle", 30, what="the worker to be idle")
    env = command_env(redis_url, pg_db, tmp_path)

    before = registry_snapshot(connection)
    result = run_command([VOLFEFE, "status", "--json"], env)
    after = registry_snapshot(connection)

    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["queue"] == QUEUE_NAME
    assert status["jobs"] == {
        "queued": 0,
        "started": 0,
        "finished": 4,
        "failed": 1,
        "scheduled": 1,
        "deferred": 1,
    }
    (listed,) = status["workers"]
    assert listed["name"] == name and listed["pid"] == worker.pid
    assert listed["current_jobs"] == [] and listed["successful_jobs"] == 4 and listed["failed_jobs"] == 1
    assert status["database"] == {
        "contents": 4,
        "classified": 3,
        "partly_classified": 0,
        "skipped": 1,
        "unclassified": 0,
    }
    assert sum(status["sentiments"].values()) == 3
    assert after == before

    # Stopped: no live worker; a stale started entry (RQ's registry.count() would clean it) stays.
    worker.stop()
    stale = f"{job_id_for(ids[0], ident)}:0123456789abcdef"
    connection.zadd(queue.started_job_registry.key, {stale: time.time() - 3600})
    before = registry_snapshot(connection)
    result = run_command([VOLFEFE, "status", "--json"], env)
    after = registry_snapshot(connection)

    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["workers"] == []
    assert status["jobs"]["started"] == 1
    assert after == before
    assert connection.zscore(queue.started_job_registry.key, stale) is not None


# -- batching -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_batch_size_does_not_change_results(
    postgres_server, pg_db: str, redis_url: str, connection: Redis, start_workers
) -> None:
    """The same contents with FINBERT_BATCH_SIZE=1 and =32 (two databases, two Redis databases)."""
    texts = [headline(i, words=1 + (i * 7) % 90) for i in range(64)]  # 1 to 90 words: much padding at 32
    second_name = f"t_batch_{uuid.uuid4().hex[:10]}"
    second_db = postgres_server.create_database(second_name)
    second_redis_url = redis_url.rsplit("/", 1)[0] + "/1"
    second_connection = Redis.from_url(second_redis_url)
    workers: list[WorkerProcess] = []
    try:
        upgrade(second_db)
        runs = {1: (pg_db, redis_url, connection), 32: (second_db, second_redis_url, second_connection)}
        job_ids: dict[int, list[str]] = {}
        for batch_size, (url, _redis, client) in runs.items():
            ids = add_contents(url, texts)
            job_ids[batch_size] = enqueue_ids(client, url, ids).job_ids
        workers += start_workers.each(
            [
                (redis_for_run, url, {"FINBERT_BATCH_SIZE": str(size), "WORKER_BATCH_JOBS": str(size)})
                for size, (url, redis_for_run, _) in runs.items()
            ]
        )
        for batch_size, (_url, _redis, client) in runs.items():
            final = wait_statuses(client, job_ids[batch_size], what=f"the run with batches of {batch_size}")
            assert set(final.values()) == {"finished"}

        one, many = classifications(pg_db), classifications(second_db)
        assert len(one) == len(many) == len(texts)
        with session_scope(pg_db) as session:
            texts_one = {key: value for key, value in session.execute(select(Content.id, Content.text))}
        with session_scope(second_db) as session:
            texts_many = {key: value for key, value in session.execute(select(Content.id, Content.text))}
        assert texts_one == texts_many  # same ids for the same texts
        for content_id, row in one.items():
            other = many[content_id]
            assert other.sentiment == row.sentiment, content_id
            assert math.isclose(other.confidence, row.confidence, abs_tol=1e-5), content_id
            for label, score in row.meta["raw_scores"].items():
                assert math.isclose(other.meta["raw_scores"][label], score, abs_tol=1e-5), content_id
            assert other.model_version == row.model_version
    finally:
        for worker in workers:
            worker.stop()
        second_connection.close()
        engine_for(second_db).dispose()
        postgres_server.drop_database(second_name)
