"""Fixtures of the fault suite: a migrated PostgreSQL database to fill, real worker processes that are
always ended, an append-only Redis, and the figures each scenario measures.

The figures are printed at the end of the run and written as JSON to ``fault-metrics.json`` in
pytest's base temporary folder (and to ``$FAULT_METRICS_JSON`` when that is set).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import psycopg.sql
import pytest
from redis import Redis
from rq.job import Job
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from db.identity import database_id
from db.models import Classification, Content
from db.session import engine_for, session_scope
from jobs.queue import MAX_ATTEMPTS, EnqueueReport, enqueue_ids, job_id_for
from services.redis_client import redis_client
from services.redis_server import RedisServer
from tests.fault_metrics import METRICS as _METRICS
from tests.faults.accounting import Accounting, account, live_job_counts
from tests.processes import WorkerProcess, wait_for
from tests.servers import PostgresServer

#: worker settings of the suite unless a test says otherwise: the production batch size.
WORKER_ENV = {"FINBERT_BATCH_SIZE": "32", "WORKER_BATCH_JOBS": "32"}
#: a worker that waits for its batch to fill (jobs enqueued one by one arrive within milliseconds).
FULL_BATCHES = {"FINBERT_BATCH_WAIT_MS": "300"}
#: seconds between two looks at the database or the queue while waiting.
POLL = 0.1
#: words of the tiny model's vocabulary (and a few it does not know), for texts of varied length.
WORDS = (
    "stocks rally on strong earnings shares fall after weak guidance market markets the a of to in and "
    "is are was up down profit loss revenue growth beat miss record high low bank rates inflation fed "
    "cut hike oil price prices dollar bond yields surge plunge gain gains drop drops tesla apple company "
    "investors quarterly outlook downgrade upgrade dividend buyback"
).split()


def post_texts(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct financial-looking posts of 4 to 60 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(4, 60))) + f" #{index}" for index in range(count)]


@dataclass
class FaultRun:
    """One scenario's database, Redis and worker processes, with the helpers every scenario uses."""

    database_url: str
    redis_url: str
    model_dir: Path
    log_dir: Path
    postgres: PostgresServer
    workers: list[WorkerProcess] = field(default_factory=list)
    #: the queue of this database's jobs (VOLFEFE_QUEUE); None: the default one.
    queue_name: str | None = None
    #: the configured model names (the workers' VOLFEFE_MODELS, given in their env): a content counts
    #: as classified once each of them has classified it.
    models: tuple[str, ...] = ("finbert",)

    @property
    def dbname(self) -> str:
        return str(make_url(self.database_url).database)

    @property
    def ident(self) -> str:
        """The database's identity, which its job ids carry."""
        return database_id(self.database_url)

    # -- data and jobs ------------------------------------------------------------------------------

    def add_contents(self, texts: list[str], source: str = "faults") -> list[int]:
        with session_scope(self.database_url) as session:
            offset = session.scalar(select(func.count()).select_from(Content)) or 0
            contents = [
                Content(source=source, external_id=f"x{offset + index}", text=text)
                for index, text in enumerate(texts)
            ]
            session.add_all(contents)
            session.flush()
            return [content.id for content in contents]

    def redis(self) -> Redis:
        return redis_client(self.redis_url)  # a plain or a Sentinel-managed Redis

    def enqueue(self, ids: list[int]) -> EnqueueReport:
        connection = self.redis()
        try:
            return enqueue_ids(connection, self.database_url, ids, self.queue_name)
        finally:
            connection.close()

    # -- workers ------------------------------------------------------------------------------------

    def start_worker(
        self,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        redis_url: str | None = None,
        database_url: str | None = None,
        **kwargs,
    ) -> WorkerProcess:
        """A worker on this run's Redis and database, or on others that lead to them (``redis_url``,
        ``database_url``: a proxy, a Sentinel URL)."""
        index = len(self.workers) + 1
        queue = {"VOLFEFE_QUEUE": self.queue_name} if self.queue_name else {}
        worker = WorkerProcess(
            redis_url or self.redis_url,
            database_url or self.database_url,
            self.model_dir,
            self.log_dir / f"worker-{index}-{self.dbname}.log",
            env={**WORKER_ENV, **queue, **(env or {})},
            **kwargs,
        )
        self.workers.append(worker)
        return worker.start(wait_ready=wait_ready)

    @staticmethod
    def kill_group(worker: WorkerProcess) -> None:
        """SIGKILL the worker and its scheduler process (its own process group): a crash of the host.

        Each process still in the group is killed by its id (the group may outlive its leader, and a
        group id is not signalled once its leader is gone: the number could have been reused)."""
        if worker.process is None:
            return
        group = worker.process.pid
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(process.pid) == group:
                    process.kill()
        worker.process.wait()

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {worker.log_path.name}\n{worker.log()[-tail:]}" for worker in self.workers)

    # -- holding a batch in the middle ---------------------------------------------------------------

    @contextlib.contextmanager
    def writes_held(self, table: str = "classifications") -> Iterator[None]:
        """Block every write of ``table`` (a table lock; reads go on) until the block ends: a worker that
        reaches its write is then caught in the middle of its batch, for as long as the test needs.
        The lock goes with its session if the block restarts the server."""
        connection = psycopg.connect(self.postgres.conninfo(self.dbname))
        try:
            connection.execute(
                psycopg.sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(psycopg.sql.Identifier(table))
            )
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                connection.rollback()
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def blocked_writers(self) -> int:
        """Sessions of this database waiting for a lock (workers caught by ``writes_held``)."""
        with psycopg.connect(self.postgres.conninfo(self.dbname), autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                (self.dbname,),
            ).fetchone()
        return int(row[0]) if row else 0

    # -- progress -----------------------------------------------------------------------------------

    def _complete(self):
        """SQL: the ids of the contents classified by every one of ``models``."""
        return (
            select(Classification.content_id)
            .where(Classification.model.in_(self.models))
            .group_by(Classification.content_id)
            .having(func.count() == len(self.models))
        )

    def classified(self) -> int:
        """Contents classified by every configured model."""
        with session_scope(self.database_url) as session:
            return session.scalar(select(func.count()).select_from(self._complete().subquery())) or 0

    def done(self) -> int:
        """Contents that reached an outcome in the database: classified or skipped for good."""
        with session_scope(self.database_url) as session:
            return (
                session.scalar(
                    select(func.count()).where(
                        Content.id.in_(self._complete()) | (Content.skip_reason.is_not(None))
                    )
                )
                or 0
            )

    def last_stored(self) -> float:
        """Epoch seconds of the newest classification row (PostgreSQL's transaction time)."""
        with session_scope(self.database_url) as session:
            newest = session.scalar(select(func.max(Classification.created_at)))
        return newest.timestamp() if newest else 0.0

    def retried_jobs(self, ids: list[int]) -> int:
        """How many of the jobs for ``ids`` used more than one attempt (retries left below the maximum)."""
        identity = self.ident
        connection = self.redis()
        try:
            with connection.pipeline(transaction=False) as pipeline:
                for content_id in ids:
                    pipeline.hget(Job.key_for(job_id_for(content_id, identity)), "retries_left")
                left = pipeline.execute()
        finally:
            connection.close()
        return sum(1 for value in left if value is not None and int(value) < MAX_ATTEMPTS - 1)

    def live_jobs(self) -> int:
        connection = self.redis()
        try:
            return sum(live_job_counts(connection, self.queue_name).values())
        finally:
            connection.close()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str, interval: float = POLL) -> float:
        """Poll ``predicate``; return the seconds it took. On timeout, fail with the workers' logs."""
        started = time.monotonic()
        try:
            wait_for(predicate, timeout, interval=interval, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.account()}\n{self.logs()}") from None
        return time.monotonic() - started

    def wait_settled(self, expected_done: int, timeout: float, what: str = "every job to end") -> float:
        """Wait until ``expected_done`` contents have an outcome and no job is live (twice in a row)."""
        quiet = [0]

        def settled() -> bool:
            quiet[0] = quiet[0] + 1 if self.done() >= expected_done and self.live_jobs() == 0 else 0
            return quiet[0] >= 2

        return self.wait(settled, timeout, what)

    def account(self) -> Accounting:
        return account(self.database_url, self.redis_url, self.queue_name, self.models)


@pytest.fixture
def fault_run(
    postgres_server: PostgresServer, postgres_url: str, redis_url: str, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[FaultRun]:
    """A migrated PostgreSQL database, the session's (emptied) Redis, and workers ended afterwards."""
    from db.migrate import upgrade

    upgrade(postgres_url)
    run = FaultRun(postgres_url, redis_url, tiny_model_dir, tmp_path, postgres_server)
    try:
        yield run
    finally:
        for worker in run.workers:
            if worker.running:
                worker.stop(timeout=15)
            run.kill_group(worker)  # the scheduler process too, if the worker left it behind
        engine_for(postgres_url).dispose()


@pytest.fixture
def make_fault_run(
    postgres_server: PostgresServer, redis_url: str, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., FaultRun]]:
    """``make_fault_run(name, queue_name=None)``: another migrated PostgreSQL database on the session's
    server, with the session's Redis; its workers are ended and the database dropped afterwards."""
    from db.migrate import upgrade

    made: list[tuple[FaultRun, str]] = []

    def make(name: str, queue_name: str | None = None) -> FaultRun:
        dbname = f"t_{name}_{os.urandom(4).hex()}"
        url = postgres_server.create_database(dbname)
        upgrade(url)
        run = FaultRun(url, redis_url, tiny_model_dir, tmp_path, postgres_server, queue_name=queue_name)
        made.append((run, dbname))
        return run

    try:
        yield make
    finally:
        for run, dbname in made:
            for worker in run.workers:
                if worker.running:
                    worker.stop(timeout=15)
                run.kill_group(worker)
            engine_for(run.database_url).dispose()
            with contextlib.suppress(psycopg.Error):
                postgres_server.drop_database(dbname)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with append-only persistence (``appendonly yes``), for restarts."""
    server = RedisServer(tmp_path / "redis-aof", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def record_metrics(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record_metrics(scenario, **figures)``: keep a scenario's figures for the summary and JSON."""
    store = request.config.stash.setdefault(_METRICS, {})

    def record(scenario: str, **figures: Any) -> None:
        store.setdefault(scenario, {}).update(figures)
        print(f"\n[faults] {scenario}: {json.dumps(figures, default=str)}")

    return record
