"""The outage scenarios' moving parts (tests/faults/test_outages.py): posts in a database, real
``rq worker`` processes on a real Redis, the outages themselves, and the figures every scenario
asserts.

The figures, read from the database and from RQ's own keys without RQ's clean-as-you-read calls:

- **lost**: posts with visible text and no classification row at the end;
- **doubled**: posts with more than one classification row, or whose job is live twice (two entries
  in the queue, queued and scheduled, two started executions);
- **reruns**: jobs that ran again after their post was stored (a result ``already_classified``, or
  more than one successful result): the model ran twice, one row was kept;
- **attempts used**: jobs with ``number_of_retries`` > 0 or fewer retries left than they were given;
- **failed**: jobs in the failed registry; **stranded**: job ids left in RQ's intermediate list;
- **hand-backs**: jobs the workers returned to the queue unrun (their logs' "handed N jobs back").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import psycopg
from redis import Redis
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer
from sqlalchemy import func, insert, select

from db.models import Classification, Content
from db.session import engine_for, session_scope
from jobs.outcomes import ALREADY_CLASSIFIED, CLASSIFIED
from jobs.queue import MAX_ATTEMPTS, QUEUE_NAME, EnqueueReport, classification_queue, enqueue_ids, job_id_for
from services.redis_server import RedisServer
from tests.processes import RQ, WorkerProcess, wait_for
from tests.servers import PostgresServer

#: seconds between two looks at the database while waiting for the last post.
POLL = 0.1
#: jobs a worker takes at once in the outage scenarios: the fault suite's batch of 32.
BATCH_JOBS = 32
WORKER_ENV = {"FINBERT_BATCH_SIZE": str(BATCH_JOBS), "WORKER_BATCH_JOBS": str(BATCH_JOBS)}
_HANDED_BACK = re.compile(r"handed (\d+) jobs back")


def add_posts(database_url: str, texts: list[str], source: str = "outages") -> list[int]:
    """Insert ``texts`` as posts in one statement; return their ids in order."""
    with session_scope(database_url) as session:
        offset = session.scalar(select(func.count()).select_from(Content)) or 0
        rows = [
            {"source": source, "external_id": f"o{offset + index}", "text": text}
            for index, text in enumerate(texts)
        ]
        inserted = session.scalars(
            insert(Content).returning(Content.id, sort_by_parameter_order=True), rows
        ).all()
        return list(inserted)


@dataclass
class Figures:
    """What one scenario ended with (see the module docstring)."""

    posts: int
    classified: int
    lost: int
    doubled: int
    reruns: int
    attempts_used: int
    failed: int
    stranded: int
    hand_backs: int
    workers_alive: int
    workers: int
    recovery_s: float | None = None
    details: dict[str, list] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        figures = asdict(self)
        figures.pop("details")
        return figures

    def __str__(self) -> str:
        return json.dumps({**self.as_dict(), **{k: v[:10] for k, v in self.details.items() if v}})


@dataclass
class OutageRun:
    """One scenario's database, Redis and worker processes (ended by the fixture that made it)."""

    database_url: str
    redis_url: str
    model_dir: Path
    log_dir: Path
    #: the database's identity, read before any outage (job ids are needed while it is down).
    database_id: str
    workers: list[WorkerProcess] = field(default_factory=list)

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url)

    def add_posts(self, texts: list[str]) -> list[int]:
        return add_posts(self.database_url, texts)

    def enqueue(self, ids: Iterable[int]) -> EnqueueReport:
        connection = self.redis()
        try:
            return enqueue_ids(connection, self.database_url, ids)
        finally:
            connection.close()

    def start_worker(self, env: dict[str, str] | None = None, wait_ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(
            self.redis_url,
            self.database_url,
            self.model_dir,
            self.log_dir / f"worker-{len(self.workers) + 1}.log",
            env={**WORKER_ENV, **(env or {})},
        )
        self.workers.append(worker)
        return worker.start(wait_ready=wait_ready)

    def start_workers(self, count: int, env: dict[str, str] | None = None) -> list[WorkerProcess]:
        """Start ``count`` workers at once (they load their models side by side), wait for each."""
        started = [self.start_worker(env, wait_ready=False) for _ in range(count)]
        for worker in started:
            wait_for(
                lambda worker=worker: "Worker: model" in worker.log() or not worker.running,
                90,
                what=f"worker {worker.pid} to load its model",
            )
            assert worker.running, f"a worker exited while starting:\n{worker.log()[-3000:]}"
        return started

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.running:
                worker.stop(timeout=15)
            kill_process_group(worker)

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-tail:]}" for w in self.workers)

    # -- progress -----------------------------------------------------------------------------------

    def classified(self) -> int:
        with session_scope(self.database_url) as session:
            return session.scalar(select(func.count(func.distinct(Classification.content_id)))) or 0

    def classified_ids(self) -> set[int]:
        with session_scope(self.database_url) as session:
            return set(session.scalars(select(Classification.content_id).distinct()))

    def wait_classified(self, expected: int, timeout: float, what: str) -> float:
        """Wait until ``expected`` posts are classified; return the epoch time it was first seen."""
        try:
            wait_for(lambda: self.classified() >= expected, timeout, interval=POLL, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.figures([])}\n{self.logs()}") from None
        return time.time()

    def wait_quiet(self, timeout: float = 30) -> None:
        """Wait until no job is queued, scheduled or started (twice in a row)."""
        quiet = [0]

        def settled() -> bool:
            quiet[0] = quiet[0] + 1 if not sum(self.live_jobs().values()) else 0
            return quiet[0] >= 2

        wait_for(settled, timeout, interval=0.2, what="the queue to go quiet")

    def live_jobs(self) -> Counter[str]:
        """How many times each job id is live: in the queue list, the scheduled registry, or started."""
        connection = self.redis()
        try:
            queue = classification_queue(connection)
            with connection.pipeline(transaction=False) as pipeline:
                pipeline.lrange(queue.key, 0, -1)
                pipeline.zrange(queue.scheduled_job_registry.key, 0, -1)
                pipeline.zrange(queue.started_job_registry.key, 0, -1)
                queued, scheduled, started = pipeline.execute()
        finally:
            connection.close()
        live: Counter[str] = Counter(member.decode() for member in queued + scheduled)
        live.update(member.decode().rsplit(":", 1)[0] for member in started)  # "<job id>:<execution>"
        return live

    def hand_backs(self) -> int:
        return sum(int(count) for w in self.workers for count in _HANDED_BACK.findall(w.log()))

    # -- the figures --------------------------------------------------------------------------------

    def queue_state(self, ids: list[int]) -> dict[str, list[str]]:
        """From Redis alone (readable while the database is down): the jobs of ``ids`` that used an
        attempt or ran again, and the failed and stranded job ids of the queue."""
        connection = self.redis()
        try:
            queue = classification_queue(connection)
            with connection.pipeline(transaction=False) as pipeline:
                pipeline.zrange(queue.failed_job_registry.key, 0, -1)
                pipeline.lrange(queue.intermediate_queue_key, 0, -1)
                failed, stranded = pipeline.execute()
            job_ids = [job_id_for(content_id, self.database_id) for content_id in ids]
            attempts, reruns = _attempts_and_reruns(connection, job_ids)
        finally:
            connection.close()
        return {
            "attempts_used": attempts,
            "reruns": reruns,
            "failed": [member.decode() for member in failed],
            "stranded": [member.decode() for member in stranded],
        }

    def figures(self, ids: list[int], recovery_s: float | None = None) -> Figures:
        """Account for the posts ``ids`` (all with visible text) against the database and the queue."""
        with session_scope(self.database_url) as session:
            rows = dict(
                session.execute(
                    select(Classification.content_id, func.count()).group_by(Classification.content_id)
                ).all()
            )
        state = self.queue_state(ids)
        live = self.live_jobs()
        lost = [content_id for content_id in ids if not rows.get(content_id)]
        doubled = [c for c in ids if rows.get(c, 0) > 1 or live[job_id_for(c, self.database_id)] > 1]
        return Figures(
            posts=len(ids),
            classified=sum(1 for content_id in ids if rows.get(content_id)),
            lost=len(lost),
            doubled=len(doubled),
            reruns=len(state["reruns"]),
            attempts_used=len(state["attempts_used"]),
            failed=len(state["failed"]),
            stranded=len(state["stranded"]),
            hand_backs=self.hand_backs(),
            workers_alive=sum(worker.running for worker in self.workers),
            workers=len(self.workers),
            recovery_s=None if recovery_s is None else round(recovery_s, 1),
            details={"lost": lost, "doubled": doubled, **state},
        )


def _attempts_and_reruns(connection: Redis, job_ids: list[str]) -> tuple[list[str], list[str]]:
    """Jobs that used an attempt (a retry), and jobs that ran again after their post was stored."""
    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hmget(Job.key_for(job_id), "number_of_retries", "retries_left")
        counters = pipeline.execute()
    attempts = [
        job_id
        for job_id, (retries, left) in zip(job_ids, counters, strict=True)
        if (retries is not None and int(retries) > 0) or (left is not None and int(left) < MAX_ATTEMPTS - 1)
    ]
    reruns = []
    for job in Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer):
        if job is None:
            continue
        results = [r for r in Result.all(job, serializer=JSONSerializer) if r.type == Result.Type.SUCCESSFUL]
        values = [r.return_value for r in results if isinstance(r.return_value, dict)]
        if len(results) > 1 or any(v.get("reason") == ALREADY_CLASSIFIED for v in values):
            reruns.append(job.id)
        elif values and values[-1].get("status") != CLASSIFIED:
            reruns.append(job.id)  # a post with text that ended skipped: counted as a misrun
    return attempts, reruns


# -- processes and servers ---------------------------------------------------------------------------


def kill_process_group(worker: WorkerProcess) -> None:
    """SIGKILL what is left of a worker's process group (its scheduler process), each by its id."""
    if worker.process is None:
        return
    group = worker.process.pid
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == group:
                process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.process.wait(10)


def kill_postgres(server: PostgresServer) -> int:
    """SIGKILL the postmaster and every backend (a crash of the database host); return the postmaster's
    pid. The stale ``postmaster.pid`` stays, as after a real crash: the next start recovers from WAL."""
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    children = postmaster.children(recursive=True)
    postmaster.send_signal(signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGKILL)
    psutil.wait_procs([postmaster, *children], timeout=10)
    return pid


def dispose_engine(database_url: str) -> None:
    """Drop the test process's pooled connections (after a server restart, or before a drop)."""
    engine_for(database_url).dispose()


def seconds_until(predicate: Callable[[], bool], timeout: float, interval: float = POLL) -> float | None:
    """Seconds until ``predicate`` held, or None if it did not within ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)
    return time.monotonic() - started


def kill_redis(server: RedisServer) -> float:
    """SIGKILL ``server`` (no shutdown, no final AOF write: a crash); return the epoch time of the kill."""
    assert server.pid is not None, "redis-server is not running"
    psutil.Process(server.pid).send_signal(signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: not server.running, 10, what="redis-server to die")
    return killed_at


@contextlib.contextmanager
def writes_held(server: PostgresServer, dbname: str) -> Iterator[None]:
    """Block every write of classifications (a table lock) until the block ends: a worker that reaches
    its write is caught in the middle of its batch, its jobs started, for as long as the test needs."""
    connection = psycopg.connect(server.conninfo(dbname))
    try:
        connection.execute("LOCK TABLE classifications IN EXCLUSIVE MODE")
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            connection.rollback()
        with contextlib.suppress(psycopg.Error):
            connection.close()


def blocked_writers(server: PostgresServer, dbname: str) -> int:
    """Sessions of ``dbname`` waiting for a lock (workers caught by ``writes_held``)."""
    with psycopg.connect(server.conninfo(dbname), autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (as root); pytest.skip when it cannot be mounted."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a small tmpfs, and mounting one needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # files still open


def fill_disk(filler: Path) -> int:
    """Write ``filler`` until the disk is full (ENOSPC on a page-sized write); return the bytes written."""
    written = 0
    with filler.open("wb", buffering=0) as handle:
        for size in (1024 * 1024, 4096):  # big blocks, then the last pages
            block = b"\0" * size
            while True:
                try:
                    written += handle.write(block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return written


def start_worker_pool(
    redis_url: str, database_url: str, model_dir: Path, log_path: Path, processes: int = 1
) -> subprocess.Popen[bytes]:
    """``rq worker-pool <queue> -w workers.FinbertWorker -n <processes>`` in its own process group,
    Redis passed as ``RQ_REDIS_URL`` (as the README says), logging to ``log_path``."""
    command = [RQ, "worker-pool", QUEUE_NAME, "-w", "workers.FinbertWorker", "-n", str(processes)]
    env = {
        **os.environ,
        "RQ_REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "FINBERT_MODEL": str(model_dir),
        "FINBERT_PRECISION": "fp32",
        "TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def end_process_group(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM a process that leads its own group, then SIGKILL whatever of the group is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    for member in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(member.pid) == process.pid:
                member.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
