"""Parity: the same jobs run by RQ's plain ``SimpleWorker`` and by our ``FinbertWorker`` leave the same Redis state.

One scenario body runs against both sides, each with its own Redis state and its own database:
- ``simple``: ``rq.SimpleWorker`` with the JSON serializer, running ``jobs.classify.classify_content``
  (and the test jobs of tests/parity_jobs.py) one by one, as RQ does;
- ``finbert``: ``tests.parity_worker.ParityFinbertWorker``, the production worker with the test jobs
  registered, batching classification jobs through ``jobs.rq_seam``.
Each scenario compares what a person (or RQ's own tools) can observe: every job's status, results
(return value or failure), the registries and the queue it is in, its execution records, retries
left, what its callbacks recorded, the rq:* keys left in Redis and the worker's counters. It runs in
process on fakeredis (with SQLite) and against a real redis-server (with PostgreSQL).

The second half drives real ``rq worker`` processes of both kinds with RQ's worker commands
(stop-job, shutdown, ``rq suspend`` / ``rq resume``) and checks that each behaves as on the plain
SimpleWorker.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import psycopg
import pytest
from redis import Redis
from rq import Callback, Queue, Retry, SimpleWorker, Worker
from rq.command import send_command, send_shutdown_command, send_stop_job_command
from rq.exceptions import NoSuchJobError
from rq.executions import ExecutionRegistry
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from sqlalchemy import func, select

import config
from db.models import Classification, Content
from db.session import engine_for, session_scope
from jobs import rq_seam
from jobs.monitoring import live_workers, queue_counts
from jobs.queue import JOB_FUNCTION, QUEUE_NAME, RESULT_TTL, enqueue_ids, job_id_for
from tests import parity_jobs
from tests.parity_worker import ParityFinbertWorker
from tests.processes import RQ, WorkerProcess, wait_for
from tests.rows import store_classification

SIDES = ("simple", "finbert")
PARITY = "tests.parity_jobs"
#: seconds a scenario's controller thread waits for a held job to start running.
HELD_JOB_START = 30.0
#: a post the tiny model classifies, one whose visible text is empty, and an id no content has.
POST = "Stocks rally on strong earnings, shares of the bank surge"
EMPTY_POST = "<p> <br/> </p>"
MISSING_CONTENT = 999_999


# -- one side of a scenario ----------------------------------------------------------------------


@dataclass
class Side:
    """One worker kind with its own Redis state and database; ``jobs`` maps scenario names to job ids."""

    kind: str
    connection: Redis
    database_url: str
    model_dir: Path
    jobs: dict[str, str] = field(default_factory=dict)
    worker: BaseWorker | None = None

    @property
    def queue(self) -> Queue:
        return Queue(QUEUE_NAME, connection=self.connection, serializer=JSONSerializer)

    def add_content(self, text: str) -> int:
        with session_scope(self.database_url) as session:
            content = Content(source="parity", external_id=f"p{time.monotonic_ns()}", text=text)
            session.add(content)
            session.flush()
            return content.id

    def classified(self, content_id: int) -> int:
        with session_scope(self.database_url) as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Classification)
                    .where(Classification.content_id == content_id)
                )
                or 0
            )

    def enqueue_classification(self, name: str, content_id: int) -> str:
        """The production enqueue (``jobs.queue.enqueue_ids``)."""
        report = enqueue_ids(self.connection, self.database_url, [content_id])
        assert report.enqueued == [content_id], report
        self.jobs[name] = report.job_ids[0]
        return self.jobs[name]

    def enqueue(self, name: str, function: str, *args: Any, **options: Any) -> str:
        """A job as anyone enqueues it with RQ's API (JSON): the test jobs, or classification with extras."""
        job = self.queue.enqueue(function, *args, **options)
        self.jobs[name] = job.id
        return job.id

    def database_id(self) -> str:
        from db.identity import database_id

        return database_id(self.database_url)

    def make_worker(self) -> BaseWorker:
        if self.kind == "simple":
            return ReferenceWorker([self.queue], connection=self.connection, serializer=JSONSerializer)
        settings = config.load_settings(
            {"DATABASE_URL": self.database_url, "FINBERT_MODEL": str(self.model_dir)}
        )
        return ParityFinbertWorker([QUEUE_NAME], connection=self.connection, config=settings)

    def work(self, during: Callable[[Side], None] | None = None) -> BaseWorker:
        """Run one burst of a worker in this thread (RQ's death penalty needs the main thread);
        ``during`` runs beside it in a thread (to send commands while a job is held)."""
        self.worker = self.worker or self.make_worker()
        controller = _Controller(during, self) if during else None
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            if controller:
                controller.start()
            self.worker.work(burst=True)
        finally:
            for signum, handler in handlers.items():  # RQ installs its own and never restores ours
                signal.signal(signum, handler)
            if controller:
                controller.finish()
        return self.worker


class ReferenceWorker(SimpleWorker):
    """RQ's SimpleWorker with one change: its pubsub thread's stop is bounded as ours is
    (rq_seam.unsubscribe_bounded). Unbounded, a race in RQ 3.0 with redis-py 8 held a burst's end for
    60 s under load, and the worker's hash expired before it could be compared."""

    def unsubscribe(self) -> None:
        rq_seam.unsubscribe_bounded(self)


class _Controller(threading.Thread):
    """Runs a scenario's ``during`` beside the worker; its failure fails the test after the burst."""

    def __init__(self, during: Callable[[Side], None], side: Side) -> None:
        super().__init__(daemon=True)
        self.during, self.side = during, side
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.during(self.side)
        except BaseException as error:  # re-raised in the test's thread by finish()
            self.error = error
            for name in self.side.jobs:  # never leave a held job waiting for its timeout
                self.side.connection.set(parity_jobs.release_key(name), "1")

    def finish(self) -> None:
        self.join(HELD_JOB_START * 2)
        if self.error is not None:
            raise self.error


# -- what is observed ------------------------------------------------------------------------------


def _registries(queue: Queue) -> dict[str, set[str]]:
    connection, name = queue.connection, queue.name
    registries = {
        "started": StartedJobRegistry(name, connection=connection),
        "finished": FinishedJobRegistry(name, connection=connection),
        "failed": FailedJobRegistry(name, connection=connection),
        "scheduled": ScheduledJobRegistry(name, connection=connection),
        "deferred": DeferredJobRegistry(name, connection=connection),
        "canceled": CanceledJobRegistry(name, connection=connection),
    }
    where = {label: set(registry.get_job_ids(cleanup=False)) for label, registry in registries.items()}
    where["queue"] = set(queue.get_job_ids())
    return where


def _result(result: Result) -> tuple[str, Any]:
    if result.type == Result.Type.SUCCESSFUL:
        return result.type.name, result.return_value
    lines = (result.exc_string or "").strip().splitlines()
    return result.type.name, lines[-1] if lines else ""


def job_state(side: Side, job_id: str, where: dict[str, set[str]]) -> dict[str, Any]:
    try:
        job = Job.fetch(job_id, connection=side.connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return {"exists": False}
    callback = side.connection.get(parity_jobs.callback_key(job_id))
    return {
        "status": job.get_status().value,
        "results": [_result(result) for result in job.results()],
        "in": sorted(label for label, ids in where.items() if job_id in ids),
        "retries_left": job.retries_left,
        "executions": len(ExecutionRegistry(job_id, side.connection).get_execution_ids()),
        "callback": callback.decode() if callback else None,
    }


#: upper bounds (seconds) of the lifetimes told apart: RQ and this project set TTLs of exactly these
#: (a dead worker's key, RESULT_TTL, FAILURE_TTL); a TTL only counts down, so it stays in its bucket.
TTL_BUCKETS = (60, RESULT_TTL, 3600, 24 * 3600)


#: maintenance locks live as long as the worker's maintenance interval (ours is shorter than RQ's
#: default, on purpose): compared by presence only.
MAINTENANCE_LOCKS = (b"rq:clean_groups", b"rq:clean_registries:")


def lifetime(connection: Redis, key: bytes) -> str:
    if key.startswith(MAINTENANCE_LOCKS):
        return "maintenance lock"
    ttl = connection.ttl(key)
    if ttl < 0:
        return "persistent"
    return next((f"<={bound}s" for bound in TTL_BUCKETS if ttl <= bound), "longer")


def redis_keys(side: Side) -> list[str]:
    """Every rq:* key and its lifetime, with job ids and the worker's name replaced by what they stand for."""
    names = sorted(side.jobs.items(), key=lambda item: -len(item[1]))
    worker = side.worker.name if side.worker else "<none>"
    normalized = set()
    for raw in side.connection.scan_iter("rq:*"):
        key = raw.decode().replace(worker, "<worker>")
        for name, job_id in names:
            key = key.replace(job_id, f"<{name}>")
        normalized.add(f"{key} {lifetime(side.connection, raw)}")
    return sorted(normalized)


def observe(side: Side) -> dict[str, Any]:
    """The Redis state a scenario leaves, in terms both sides share."""
    assert side.worker is not None
    where = _registries(side.queue)
    counters = Worker.find_by_key(side.worker.key, connection=side.connection)
    assert counters is not None, "the worker's hash is readable after its burst"
    return {
        "jobs": {name: job_state(side, job_id, where) for name, job_id in sorted(side.jobs.items())},
        "keys": redis_keys(side),
        "worker": {
            "state": counters.get_state(),
            "successful_job_count": counters.successful_job_count,
            "failed_job_count": counters.failed_job_count,
            "worked": counters.total_working_time > 0,
            "executions_in_memory": len(side.worker.executions),
        },
        "runs": {
            key.decode().removeprefix(parity_jobs.runs_key("")): int(side.connection.get(key) or 0)
            for key in side.connection.scan_iter(parity_jobs.runs_key("*"))
        },
    }


# -- scenarios: one body, both sides ---------------------------------------------------------------
# Each returns the observations of its stages; the test compares them between the sides and checks
# on the plain SimpleWorker's (hence on both) that the scenario did what it says.


def classified(side: Side) -> list[dict]:
    content_id = side.add_content(POST)
    side.enqueue_classification("post", content_id)
    side.work()
    assert side.classified(content_id) == 1
    return [observe(side)]


def skip_content_missing(side: Side) -> list[dict]:
    side.enqueue_classification("missing", MISSING_CONTENT)
    side.work()
    return [observe(side)]


def skip_no_text(side: Side) -> list[dict]:
    content_id = side.add_content(EMPTY_POST)
    side.enqueue_classification("empty", content_id)
    side.work()
    assert side.classified(content_id) == 0
    return [observe(side)]


def failure_retry_failed(side: Side) -> list[dict]:
    side.enqueue("failing", f"{PARITY}.fail", "boom", retry=Retry(max=1, interval=60))
    side.work()
    first = observe(side)
    # Due now, then moved by RQ's own scheduler code (as a worker's scheduler would in 60 s).
    job = Job.fetch(side.jobs["failing"], connection=side.connection, serializer=JSONSerializer)
    side.queue.scheduled_job_registry.schedule(job, datetime.now(UTC))
    scheduler = RQScheduler([side.queue], connection=side.connection, serializer=JSONSerializer)
    scheduler.acquire_locks()
    try:
        scheduler.enqueue_scheduled_jobs()
    finally:
        scheduler.release_locks()
    side.work()
    return [first, observe(side)]


def dependents(side: Side) -> list[dict]:
    content_id = side.add_content(POST)
    parent = side.enqueue_classification("parent", content_id)
    side.enqueue("child", f"{PARITY}.succeed", 7, depends_on=parent)
    failing = side.enqueue("failing-parent", f"{PARITY}.fail", "parent")
    side.enqueue("child-of-failed", f"{PARITY}.succeed", 8, depends_on=failing)
    side.work()
    return [observe(side)]


def callbacks(side: Side) -> list[dict]:
    content_id = side.add_content(POST)
    side.enqueue(
        "post-with-callback",
        JOB_FUNCTION,
        content_id,
        side.database_id(),
        job_id=job_id_for(content_id, side.database_id()),
        result_ttl=RESULT_TTL,
        on_success=Callback(f"{PARITY}.record_success"),
    )
    side.enqueue("succeeds", f"{PARITY}.succeed", 3, on_success=Callback(f"{PARITY}.record_success"))
    side.enqueue("fails", f"{PARITY}.fail", "callback", on_failure=Callback(f"{PARITY}.record_failure"))
    side.work()
    assert side.classified(content_id) == 1
    return [observe(side)]


def other_function(side: Side) -> list[dict]:
    side.enqueue("other", f"{PARITY}.succeed", 20)
    side.work()
    return [observe(side)]


def job_timeout(side: Side) -> list[dict]:
    side.enqueue("slow", f"{PARITY}.sleep_for", 30, job_timeout=1)
    side.work()
    return [observe(side)]


def _stop_each_when_running(side: Side) -> None:
    """Controller: for each held job in turn, stop-job it once it runs, then release it."""
    assert side.worker is not None
    for name in ("stop-then-return", "stop-then-raise"):
        job_id = side.jobs[name]
        wait_for(
            lambda name=name: side.connection.exists(parity_jobs.running_key(name)),
            HELD_JOB_START,
            what=f"{name} to run",
        )
        send_stop_job_command(side.connection, job_id, serializer=JSONSerializer)
        # The worker's pubsub thread notes the job as stopped (RQ's handle_stop_job_command); a
        # SimpleWorker has no horse to kill, so the job goes on. Released only once that is noted,
        # so that the test does not depend on the thread's speed.
        wait_for(
            lambda job_id=job_id: side.worker._stopped_job_id == job_id,
            HELD_JOB_START,
            what="the stop-job command",
        )
        side.connection.set(parity_jobs.release_key(name), "1")


def stop_job(side: Side) -> list[dict]:
    side.enqueue("stop-then-return", f"{PARITY}.wait_for_release", "stop-then-return")
    side.enqueue("stop-then-raise", f"{PARITY}.wait_for_release", "stop-then-raise", then="raise")
    content_id = side.add_content(POST)
    side.enqueue_classification("post-after", content_id)
    side.work(during=_stop_each_when_running)
    return [observe(side)]


def mixed_batch(side: Side) -> list[dict]:
    """Every kind of job in one queue: our worker takes them as one batch, RQ's one by one."""
    first, second = side.add_content(POST), side.add_content("Shares fall after weak guidance")
    empty = side.add_content(EMPTY_POST)
    done = side.add_content("Oil prices drop")
    with session_scope(side.database_url) as session:
        store_classification(session, done, "neutral", 0.6, "earlier", {"neutral": 0.6, "positive": 0.4})
    side.enqueue_classification("first", first)
    side.enqueue("other", f"{PARITY}.succeed", 4)
    side.enqueue_classification("second", second)
    side.enqueue("same-post-again", JOB_FUNCTION, second, side.database_id(), result_ttl=RESULT_TTL)
    side.enqueue("failing", f"{PARITY}.fail", "in-batch")
    side.enqueue_classification("empty", empty)
    side.enqueue_classification("missing", MISSING_CONTENT)
    side.enqueue_classification("done-before", done)
    side.work()
    assert side.classified(first) == side.classified(second) == 1
    return [observe(side)]


def expect_mixed_batch(stages: list[dict]) -> None:
    jobs = stages[-1]["jobs"]
    outcomes = {
        name: (job["results"][0][1].get("status"), job["results"][0][1].get("reason"))
        for name, job in jobs.items()
        if name not in {"other", "failing"}
    }
    assert outcomes == {
        "first": ("classified", None),
        "second": ("classified", None),
        "same-post-again": ("skipped", "already_classified"),
        "empty": ("skipped", "no_text_to_classify"),
        "missing": ("skipped", "content_not_found"),
        "done-before": ("skipped", "already_classified"),
    }
    assert jobs["failing"]["status"] == "failed" and jobs["other"]["status"] == "finished"
    assert stages[-1]["worker"]["successful_job_count"] == 7 and stages[-1]["worker"]["failed_job_count"] == 1


def _only(stages: list[dict], name: str) -> dict:
    return stages[-1]["jobs"][name]


def expect_classified(stages: list[dict]) -> None:
    post = _only(stages, "post")
    assert post["status"] == "finished" and post["in"] == ["finished"]
    ((kind, value),) = post["results"]
    assert kind == "SUCCESSFUL" and value["status"] == "classified" and value["sentiment"]
    assert stages[-1]["worker"]["successful_job_count"] == 1 and stages[-1]["worker"]["worked"]


def _expect_skip(reason: str, name: str) -> Callable[[list[dict]], None]:
    def check(stages: list[dict]) -> None:
        job = _only(stages, name)
        assert job["status"] == "finished"
        ((kind, value),) = job["results"]
        assert (kind, value["status"], value["reason"]) == ("SUCCESSFUL", "skipped", reason)

    return check


def expect_retried_then_failed(stages: list[dict]) -> None:
    first, last = stages[0]["jobs"]["failing"], stages[1]["jobs"]["failing"]
    assert first["status"] == "scheduled" and first["in"] == ["scheduled"] and first["retries_left"] == 0
    assert last["status"] == "failed" and last["in"] == ["failed"]
    assert last["results"][0] == ("FAILED", "tests.parity_jobs.ParityFailure: boom")
    assert stages[1]["runs"] == {"fail-boom": 2}
    assert stages[1]["worker"]["failed_job_count"] == 1  # this burst's worker: the second attempt


def expect_dependents(stages: list[dict]) -> None:
    jobs = stages[-1]["jobs"]
    assert jobs["parent"]["status"] == jobs["child"]["status"] == "finished"
    assert jobs["child"]["results"] == [("SUCCESSFUL", {"value": 7, "double": 14})]
    assert jobs["failing-parent"]["status"] == "failed"
    assert jobs["child-of-failed"]["status"] == "deferred" and jobs["child-of-failed"]["in"] == ["deferred"]


def expect_callbacks(stages: list[dict]) -> None:
    jobs = stages[-1]["jobs"]
    assert jobs["post-with-callback"]["callback"].startswith("success: {")
    assert jobs["succeeds"]["callback"] == "success: {'value': 3, 'double': 6}"
    assert jobs["fails"]["callback"] == "failure: ParityFailure: callback"
    assert jobs["fails"]["status"] == "failed"


def expect_other_function(stages: list[dict]) -> None:
    assert _only(stages, "other")["results"] == [("SUCCESSFUL", {"value": 20, "double": 40})]
    assert stages[-1]["runs"] == {"succeed-20": 1}


def expect_timeout(stages: list[dict]) -> None:
    slow = _only(stages, "slow")
    assert slow["status"] == "failed" and slow["in"] == ["failed"]
    assert slow["results"][0][1].startswith("rq.timeouts.JobTimeoutException")


def expect_stop_job(stages: list[dict]) -> None:
    jobs = stages[-1]["jobs"]
    # A SimpleWorker cannot kill its own thread: the job runs on, and only a failure becomes STOPPED.
    assert jobs["stop-then-return"]["status"] == "finished"
    assert jobs["stop-then-raise"]["status"] == "stopped" and jobs["stop-then-raise"]["in"] == ["failed"]
    assert jobs["post-after"]["status"] == "finished"


SCENARIOS: dict[str, tuple[Callable[[Side], list[dict]], Callable[[list[dict]], None]]] = {
    "classified": (classified, expect_classified),
    "skip-content-missing": (skip_content_missing, _expect_skip("content_not_found", "missing")),
    "skip-no-text": (skip_no_text, _expect_skip("no_text_to_classify", "empty")),
    "failure-retry-failed": (failure_retry_failed, expect_retried_then_failed),
    "dependents": (dependents, expect_dependents),
    "callbacks": (callbacks, expect_callbacks),
    "other-function": (other_function, expect_other_function),
    "job-timeout": (job_timeout, expect_timeout),
    "stop-job": (stop_job, expect_stop_job),
    "mixed-batch": (mixed_batch, expect_mixed_batch),
}


def differences(simple: Any, finbert: Any, path: str = "") -> list[str]:
    """Where the two observations differ, one line per differing leaf (empty when they are equal)."""
    if isinstance(simple, dict) and isinstance(finbert, dict):
        return [
            line
            for key in sorted(set(simple) | set(finbert), key=str)
            for line in differences(
                simple.get(key, "<absent>"), finbert.get(key, "<absent>"), f"{path}/{key}"
            )
        ]
    if isinstance(simple, list) and isinstance(finbert, list) and path.endswith("/keys"):
        return [f"{path}: only simple {key}" for key in simple if key not in finbert] + [
            f"{path}: only finbert {key}" for key in finbert if key not in simple
        ]
    if isinstance(simple, list) and isinstance(finbert, list) and len(simple) == len(finbert):
        return [
            line
            for index, pair in enumerate(zip(simple, finbert, strict=True))
            for line in differences(*pair, f"{path}[{index}]")
        ]
    return [] if simple == finbert else [f"{path}: simple {simple!r} != finbert {finbert!r}"]


# -- the two backends ------------------------------------------------------------------------------


@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.integration)])
def make_side(
    request: pytest.FixtureRequest,
    classifier,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], Side]]:
    """``make_side(kind)``: a fresh Redis state and a fresh migrated database for one side.

    fakeredis sides use a SQLite file each; redis-server sides share the session's server (emptied
    for each side) and get a PostgreSQL database each.
    """
    from db.migrate import upgrade

    urls: list[str] = []
    databases: list[str] = []
    connections: list[Redis] = []
    real = request.param == "redis-server"
    redis_url = request.getfixturevalue("redis_url") if real else ""
    postgres = request.getfixturevalue("postgres_server") if real else None

    def make(kind: str) -> Side:
        if postgres is None:
            connection: Redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
            url = f"sqlite:///{tmp_path / f'{kind}.db'}"
        else:
            connection = Redis.from_url(redis_url)
            connection.flushall()
            databases.append(f"parity_{kind}_{time.monotonic_ns()}")
            url = postgres.create_database(databases[-1])
        upgrade(url)
        urls.append(url)
        connections.append(connection)
        # The job (run by either worker) reads the database from the process settings, as in production.
        monkeypatch.setenv("DATABASE_URL", url)
        config.settings.cache_clear()
        return Side(kind, connection, url, tiny_model_dir)

    yield make
    config.settings.cache_clear()
    for connection in connections:
        connection.close()
    for url in urls:
        engine_for(url).dispose()
    for name in databases:  # tidy-up only: the whole cluster goes at the session's end
        with contextlib.suppress(psycopg.Error):
            postgres.drop_database(name)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_finbert_worker_leaves_the_state_a_simple_worker_leaves(
    scenario: str, make_side: Callable[[str], Side]
) -> None:
    run, expect = SCENARIOS[scenario]
    observed = {kind: run(make_side(kind)) for kind in SIDES}
    expect(observed["simple"])
    assert differences(observed["simple"], observed["finbert"]) == []
    for stage in observed["finbert"]:
        assert not [key for key in stage["keys"] if key.startswith("rq:execution:")], stage["keys"]
        assert stage["worker"]["executions_in_memory"] == 0
        assert all(job.get("executions", 0) == 0 for job in stage["jobs"].values())


# -- RQ's worker commands on real `rq worker` processes, both kinds ---------------------------------

#: the worker classes compared, as ``rq worker`` is told them (the plain one reads and writes JSON).
WORKER_CLASSES = {
    "simple": ("rq.worker.SimpleWorker", ["--serializer", "json"]),
    "finbert": ("tests.parity_worker.ParityFinbertWorker", []),
}
LISTENING_LINE = "Listening on"
#: what RQ (or Python, for a thread) logs when a worker's main loop or its pubsub thread ends on an exception.
CRASH_SIGNS = ("found an unhandled exception", "pubsub thread exiting", "Exception in thread")
#: seconds a plain worker may take for its first classification's model load (torch import included).
MODEL_LOAD_TIMEOUT = 180
#: seconds a real worker may take to end a job (the tiny model loads lazily in a plain worker).
JOB_END_TIMEOUT = 60.0
#: seconds a worker may take to exit: a plain RQ 3.0 worker can wait out its pubsub thread's 60 s
#: sleep on the way out (the race jobs.rq_seam.unsubscribe_bounded closes for ours).
EXIT_TIMEOUT = JOB_END_TIMEOUT + 60.0
#: seconds a suspended worker is watched to take no job: two of RQ's one-second suspension checks.
SUSPENDED_WATCH = 3.0


@dataclass
class RealWorkers:
    """Real worker processes of one kind on the session's redis-server and a migrated PostgreSQL database."""

    kind: str
    redis_url: str
    database_url: str
    model_dir: Path
    log_dir: Path
    connection: Redis
    processes: list[WorkerProcess] = field(default_factory=list)

    @property
    def queue(self) -> Queue:
        return Queue(QUEUE_NAME, connection=self.connection, serializer=JSONSerializer)

    def start(self) -> WorkerProcess:
        worker_class, args = WORKER_CLASSES[self.kind]
        process = WorkerProcess(
            self.redis_url,
            self.database_url,
            self.model_dir,
            self.log_dir / f"{self.kind}-{len(self.processes) + 1}.log",
            args=args,
            worker_class=worker_class,
        )
        self.processes.append(process)
        # A plain worker loads the model in its first classification, which could outlast the job's
        # timeout on a busy machine: its first job loads it, ahead of everything queued (a no-op for ours).
        warm = self.queue.enqueue(f"{PARITY}.load_model", job_timeout=MODEL_LOAD_TIMEOUT, at_front=True)
        process.start(wait_ready=False)
        wait_for(
            lambda: LISTENING_LINE in process.log() or not process.running,
            60,
            what=f"{self.kind} worker {process.pid} to listen",
        )
        assert process.running, process.log()[-3000:]
        self.wait_status(warm.id, "finished", timeout=MODEL_LOAD_TIMEOUT)
        return process

    def worker_name(self, process: WorkerProcess) -> str:
        (worker,) = [w for w in Worker.all(connection=self.connection) if w.pid == process.pid]
        return worker.name

    def enqueue(self, function: str, *args: Any, **options: Any) -> Job:
        return self.queue.enqueue(function, *args, **options)

    def enqueue_post(self, text: str = POST) -> tuple[int, str]:
        with session_scope(self.database_url) as session:
            content = Content(source="parity", external_id=f"r{time.monotonic_ns()}", text=text)
            session.add(content)
            session.flush()
            content_id = content.id
        report = enqueue_ids(self.connection, self.database_url, [content_id])
        return content_id, report.job_ids[0]

    def classified(self, content_id: int) -> int:
        with session_scope(self.database_url) as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Classification)
                    .where(Classification.content_id == content_id)
                )
                or 0
            )

    def status(self, job_id: str) -> str:
        return Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer).get_status().value

    def wait_status(self, job_id: str, *statuses: str, timeout: float = JOB_END_TIMEOUT) -> None:
        wait_for(lambda: self.status(job_id) in statuses, timeout, what=f"job {job_id} to be {statuses}")

    def homes(self, job_id: str) -> list[str]:
        """The queue and registries that hold ``job_id``: a job that exists has exactly one."""
        where = _registries(self.queue)
        where["intermediate"] = {
            raw.decode() for raw in self.connection.lrange(self.queue.intermediate_queue_key, 0, -1)
        }
        return sorted(label for label, ids in where.items() if job_id in ids)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-4000:]}" for p in self.processes)

    def assert_healthy(self, process: WorkerProcess) -> None:
        """Still running, and neither its main loop nor its pubsub thread ended on an exception."""
        log = process.log()
        assert process.running, log[-3000:]
        crashes = [line for line in log.splitlines() if any(sign in line for sign in CRASH_SIGNS)]
        assert not crashes, log[-3000:]


@pytest.fixture(params=SIDES)
def real_workers(
    request: pytest.FixtureRequest, redis_url: str, postgres_url: str, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[RealWorkers]:
    from db.migrate import upgrade

    upgrade(postgres_url)
    connection = Redis.from_url(redis_url)
    workers = RealWorkers(request.param, redis_url, postgres_url, tiny_model_dir, tmp_path, connection)
    try:
        yield workers
    finally:
        for process in workers.processes:
            process.stop(timeout=15)
        connection.close()
        engine_for(postgres_url).dispose()


def _release(workers: RealWorkers, name: str) -> None:
    workers.connection.set(parity_jobs.release_key(name), "1")


def _held(workers: RealWorkers, name: str, then: str = "return") -> Job:
    job = workers.enqueue(f"{PARITY}.wait_for_release", name, then=then)
    return job


def _wait_running(workers: RealWorkers, name: str) -> None:
    wait_for(
        lambda: workers.connection.exists(parity_jobs.running_key(name)),
        JOB_END_TIMEOUT,
        what=f"held job {name} to run\n{workers.logs()}",
    )


def _commands_handled(workers: RealWorkers, process: WorkerProcess) -> None:
    """Wait until the worker's pubsub thread has handled every command sent so far.

    The thread handles commands in order: once it answers a ``kill-horse`` (a no-op for a worker
    without a work horse, logged), everything sent before it has been handled."""
    seen = process.log().count("Received kill horse command")
    send_command(workers.connection, workers.worker_name(process), "kill-horse")
    wait_for(
        lambda: process.log().count("Received kill horse command") > seen,
        30,
        what=f"the worker's pubsub thread to answer\n{process.log()[-3000:]}",
    )


def _shut_down(workers: RealWorkers, process: WorkerProcess) -> None:
    """RQ's shutdown command: proves the pubsub thread still listens; the worker exits 0."""
    send_shutdown_command(workers.connection, workers.worker_name(process))
    assert process.process is not None
    assert process.process.wait(EXIT_TIMEOUT) == 0, process.log()[-3000:]


@pytest.mark.integration
def test_stop_job_to_an_idle_worker_is_ignored(real_workers: RealWorkers) -> None:
    workers = real_workers
    process = workers.start()
    done = workers.enqueue(f"{PARITY}.succeed", 1)
    workers.wait_status(done.id, "finished")

    send_stop_job_command(workers.connection, done.id, serializer=JSONSerializer)
    _commands_handled(workers, process)
    assert f"Not working on job {done.id}, command ignored" in process.log()
    workers.assert_healthy(process)

    # The next batch runs: a classification and another job.
    content_id, post = workers.enqueue_post()
    after = workers.enqueue(f"{PARITY}.succeed", 2)
    workers.wait_status(post, "finished")
    workers.wait_status(after.id, "finished")
    assert workers.classified(content_id) == 1
    assert [workers.homes(job_id) for job_id in (done.id, post, after.id)] == [["finished"]] * 3
    workers.assert_healthy(process)
    _shut_down(workers, process)


@pytest.mark.integration
@pytest.mark.parametrize("then", ["return", "raise"])
def test_stop_job_to_a_busy_worker(real_workers: RealWorkers, then: str) -> None:
    workers = real_workers
    process = workers.start()
    held = _held(workers, "busy", then)
    _wait_running(workers, "busy")
    content_id, post = workers.enqueue_post()  # arrive while the worker is busy: its next batch
    after = workers.enqueue(f"{PARITY}.succeed", 5)

    # What `volfefe status` reads (RQ's public API) sees the same on both: one job running, on this worker.
    (info,) = live_workers(workers.connection)
    assert (info.name, info.state, info.current_jobs) == (workers.worker_name(process), "busy", [held.id])
    assert queue_counts(workers.connection).started == 1

    send_stop_job_command(workers.connection, held.id, serializer=JSONSerializer)
    _commands_handled(workers, process)
    _release(workers, "busy")

    # A worker without a work horse cannot kill the job: it runs on; a failure then counts as STOPPED.
    expected = {"return": ("finished", ["finished"]), "raise": ("stopped", ["failed"])}[then]
    workers.wait_status(held.id, expected[0])
    workers.wait_status(post, "finished")
    workers.wait_status(after.id, "finished")
    assert workers.homes(held.id) == expected[1]
    assert [workers.homes(job_id) for job_id in (post, after.id)] == [["finished"]] * 2
    assert workers.classified(content_id) == 1
    assert workers.queue.started_job_registry.get_job_count(cleanup=False) == 0

    # The pubsub thread lives on: it answers a second stop-job, and the shutdown.
    send_stop_job_command(workers.connection, after.id, serializer=JSONSerializer)
    _commands_handled(workers, process)
    assert f"Not working on job {after.id}, command ignored" in process.log()
    workers.assert_healthy(process)
    _shut_down(workers, process)


@pytest.mark.integration
def test_shutdown_command_leaves_no_job_stranded(real_workers: RealWorkers) -> None:
    workers = real_workers
    held = _held(workers, "first")
    waiting = workers.enqueue(f"{PARITY}.succeed", 11)
    content_id, post = workers.enqueue_post()
    process = workers.start()  # a FinbertWorker takes all three in one batch
    _wait_running(workers, "first")

    send_shutdown_command(workers.connection, workers.worker_name(process))
    name = workers.worker_name(process)
    wait_for(
        lambda: (
            (worker := Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, workers.connection))
            is not None
            and worker.shutdown_requested_date is not None
        ),
        30,
        what="the warm shutdown to be noted",
    )
    _release(workers, "first")
    assert process.process is not None and process.process.wait(EXIT_TIMEOUT) == 0, process.log()[-3000:]

    # The job that ran finished; the others wait in the queue, in their order, started by no one.
    assert workers.status(held.id) == "finished"
    assert [workers.status(waiting.id), workers.status(post)] == ["queued", "queued"]
    assert workers.queue.get_job_ids() == [waiting.id, post]
    assert [workers.homes(job_id) for job_id in (waiting.id, post)] == [["queue"]] * 2
    assert workers.queue.started_job_registry.get_job_count(cleanup=False) == 0
    assert not list(workers.connection.scan_iter("rq:execution:*"))
    assert not Worker.all(connection=workers.connection)

    # A new worker runs them: none was stranded.
    successor = workers.start()
    workers.wait_status(waiting.id, "finished")
    workers.wait_status(post, "finished")
    assert workers.classified(content_id) == 1
    workers.assert_healthy(successor)


def _rq_cli(workers: RealWorkers, *arguments: str) -> None:
    subprocess.run(
        [RQ, *arguments],
        env={**os.environ, "RQ_REDIS_URL": workers.redis_url},
        check=True,
        timeout=60,
        capture_output=True,
    )


def _state(workers: RealWorkers, process: WorkerProcess) -> str:
    (worker,) = [w for w in Worker.all(connection=workers.connection) if w.pid == process.pid]
    return worker.get_state()


@pytest.mark.integration
def test_rq_suspend_and_resume(real_workers: RealWorkers) -> None:
    """RQ checks for a suspension between jobs (``rq worker`` refuses to start while suspended)."""
    workers = real_workers
    process = workers.start()

    # Suspended while busy: the running job ends, the next one waits for the resume.
    held = _held(workers, "suspended-mid-job")
    _wait_running(workers, "suspended-mid-job")
    later = workers.enqueue(f"{PARITY}.succeed", 32)
    _rq_cli(workers, "suspend")
    _release(workers, "suspended-mid-job")
    workers.wait_status(held.id, "finished")
    wait_for(lambda: _state(workers, process) == "suspended", 30, what="the worker to be suspended")
    time.sleep(SUSPENDED_WATCH)  # watching for something that must not happen
    assert workers.status(later.id) == "queued" and workers.homes(later.id) == ["queue"]
    _rq_cli(workers, "resume")
    workers.wait_status(later.id, "finished")

    # Suspended while idle: the worker is waiting in its dequeue, so (as in RQ) it takes the one job
    # that ends its wait, then sees the suspension and takes no other.
    _rq_cli(workers, "suspend")
    ends_the_wait = workers.enqueue(f"{PARITY}.succeed", 33)
    workers.wait_status(ends_the_wait.id, "finished")
    wait_for(lambda: _state(workers, process) == "suspended", 30, what="the worker to be suspended")
    waits = workers.enqueue(f"{PARITY}.succeed", 34)
    time.sleep(SUSPENDED_WATCH)
    assert workers.status(waits.id) == "queued" and workers.homes(waits.id) == ["queue"]
    _rq_cli(workers, "resume")
    workers.wait_status(waits.id, "finished")
    workers.assert_healthy(process)


# -- the seam's boundary: nothing else reaches below RQ's documented API --------------------------

PROJECT = Path(__file__).resolve().parent.parent
SEAM = PROJECT / "jobs" / "rq_seam.py"
#: top-level folders not scanned: tests and benchmarks may look inside RQ; the rest is not ours.
NOT_SCANNED = {"tests", "bench", ".venv", ".git", "build", "dist", "var", "node_modules"}
#: RQ calls and attributes without a leading underscore that are still below its documented API:
#: they write RQ's state the way only its worker does.
RQ_INTERNAL_CALLS = {
    "prepare_for_execution",
    "cleanup_execution",
    "push_job_id",
    "intermediate_queue_key",
    "get_locking_key",
    "WORKER_EXECUTIONS_KEY_TEMPLATE",
}


#: known uses still to move, by file: ``FinbertWorker._wait_out_outage`` (outage work, edited
#: separately) reads ``self._stop_requested``: it becomes ``rq_seam.stop_requested(self)``.
PENDING_MOVES: dict[str, list[str]] = {}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def rq_private_names() -> set[str]:
    """Every private attribute and method RQ's own classes use on ``self`` or ``cls``, and its private
    module-level names."""
    import rq

    names: set[str] = set()
    for path in Path(rq.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in {"self", "cls"} and _private(node.attr):
                    names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                names |= {
                    item.name
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _private(item.name)
                }
    return names


def rq_internals_used(source: str, private_names: set[str]) -> list[str]:
    """Where ``source`` reaches below RQ's documented API: a private RQ name on any object, on ``self``
    in a subclass of an RQ class (a use of RQ's attribute, or one of ours shadowing it), a private name
    imported from rq, or one of RQ_INTERNAL_CALLS. One line each: ``<line>: <what>``."""
    tree = ast.parse(source)
    from_rq: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rq":
            for alias in node.names:
                from_rq.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"{node.lineno}: imports {node.module}.{alias.name}")
    rq_subclass_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(base, ast.Name) and base.id in from_rq for base in node.bases
        ):
            rq_subclass_lines |= {inner.lineno for inner in ast.walk(node) if hasattr(inner, "lineno")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            receiver = node.value.id if isinstance(node.value, ast.Name) else None
            if node.attr in RQ_INTERNAL_CALLS:
                found.append(f"{node.lineno}: .{node.attr}")
            elif (
                node.attr in private_names
                and _private(node.attr)
                and (receiver not in {"self", "cls"} or node.lineno in rq_subclass_lines)
            ):
                found.append(f"{node.lineno}: {receiver or '<expression>'}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in RQ_INTERNAL_CALLS:
            found.append(f"{node.lineno}: {node.id}")
    return sorted(set(found), key=lambda line: int(line.split(":")[0]))


def project_sources() -> list[Path]:
    return sorted(
        path
        for path in PROJECT.rglob("*.py")
        if path.relative_to(PROJECT).parts[0] not in NOT_SCANNED and "site-packages" not in path.parts
    )


def test_the_scan_finds_what_it_looks_for() -> None:
    private = rq_private_names()
    assert {"_result", "_handle_success", "_executions", "_stop_requested", "_deserialize_data"} <= private
    source = (
        "from rq.worker import SimpleWorker\n"
        "from rq.scripts import _build_hset_args\n"
        "class W(SimpleWorker):\n"
        "    def __init__(self):\n"
        "        self._executions = {}\n"  # shadows RQ's own
        "        self._batch = []\n"  # ours, named for our concept: fine
        "def finish(job, pipeline):\n"
        "    job._result = 1\n"
        "    job.prepare_for_execution('w', pipeline)\n"
        "class Other:\n"
        "    def __init__(self):\n"
        "        self._result = None\n"  # not an RQ object: fine
    )
    assert rq_internals_used(source, private) == [
        "2: imports rq.scripts._build_hset_args",
        "5: self._executions",
        "8: job._result",
        "9: .prepare_for_execution",
    ]


def test_nothing_outside_the_seam_touches_rq_internals() -> None:
    private = rq_private_names()
    sources = [path for path in project_sources() if path != SEAM]
    assert PROJECT / "workers" / "worker.py" in sources  # the scan covers the project's code
    found = {
        str(path.relative_to(PROJECT)): [line.split(": ", 1)[1] for line in used]
        for path in sources
        if (used := rq_internals_used(path.read_text(), private))
    }
    for path, uses in PENDING_MOVES.items():
        assert set(uses) <= set(found.get(path, [])), (
            f"{path} no longer uses {uses}: remove it from PENDING_MOVES"
        )
        found[path] = [use for use in found[path] if use not in uses]
    found = {path: uses for path, uses in found.items() if uses}
    assert found == {}, "move these into jobs/rq_seam.py (one function each, naming the RQ code it mirrors)"
