"""The pipeline end to end: a fresh database, a private Redis, W warm ``rq worker`` processes.

Timing starts when the sweep (what ``enqueue.py --all`` runs) starts enqueueing, and stops at the
first poll of ``COUNT(*)`` that finds every content classified (or skipped for good) in the database.
Enqueueing and the workers overlap, as in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    RQ,
    child_env,
    children_uss_mb,
    log,
    proc_status_mb,
    shielded_from_signals,
    stop_process,
    wait_until,
)

QUEUE = "ml_classification"
#: the line the worker logs once its model is loaded.
READY_LINE = "Worker: model"
#: seconds a worker may take to import torch and load the model (2 at once on a busy machine).
READY_TIMEOUT = 300.0
#: seconds between two COUNT(*) polls while the pipeline runs.
POLL_INTERVAL = 0.025
#: the slowest rate (items/s) a run may have before it is abandoned as stuck.
STUCK_RATE = 1.0
#: seconds a run gets on top of ``items / STUCK_RATE``.
STUCK_MARGIN = 120.0
SOURCE = "bench"


class PipelineError(RuntimeError):
    """A run could not complete (a worker died, or nothing moved for too long)."""


class WorkerProcess:
    """One ``rq worker ml_classification -w workers.FinbertWorker --with-scheduler`` process."""

    def __init__(self, redis_url: str, env: dict[str, str], log_path: Path) -> None:
        self.command = [
            RQ,
            "worker",
            QUEUE,
            "-w",
            "workers.FinbertWorker",
            "--with-scheduler",
            "--url",
            redis_url,
        ]
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        return READY_LINE in self.log()

    def memory(self) -> dict[str, Any]:
        """Peak and current RSS of the worker process, and the memory unique to its children."""
        figures: dict[str, Any] = {"pid": self.pid, **proc_status_mb(self.pid)}
        figures["children_uss_mb"] = children_uss_mb(self.pid)
        return figures

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=20)


@dataclass
class Deployment:
    """A database holding the texts, a Redis, and warm workers reading from it."""

    label: str
    database: str
    database_url: str
    redis_url: str
    precision: str
    workers: list[WorkerProcess] = field(default_factory=list)
    content_ids: list[int] = field(default_factory=list)

    def assert_workers_alive(self) -> None:
        for worker in self.workers:
            if not worker.running:
                raise PipelineError(f"worker {worker.pid} exited:\n{worker.log()[-3000:]}")


def import_texts(database_url: str, texts: list[str], work_dir: Path, tag: str) -> list[int]:
    """Import ``texts`` with the product's importer (JSON Lines file); return the new content ids."""
    from sqlalchemy import select

    from db.importer import import_posts
    from db.models import Content
    from db.session import session_factory, session_scope

    path = work_dir / f"{tag}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for index, text in enumerate(texts):
            handle.write(json.dumps({"source": SOURCE, "external_id": f"{tag}-{index}", "text": text}) + "\n")
    # A plain session: import_posts commits every CHUNK_SIZE rows itself, which session_scope's
    # begin() block forbids (more than 1000 rows would fail there).
    with session_factory(database_url)() as session:
        report = import_posts(session, path)
    if report.rejected or report.inserted != len(texts):
        raise PipelineError(f"import of {tag}: {report.inserted} inserted, rejected {report.rejected[:3]}")
    with session_scope(database_url) as session:
        ids = session.scalars(
            select(Content.id)
            .where(Content.source == SOURCE, Content.external_id.like(f"{tag}-%"))
            .order_by(Content.id)
        )
        return list(ids)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and its threads so far."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def done_count(database_url: str) -> int:
    """Contents classified (with a consensus: every model's row is written with it in one transaction)
    or skipped for good."""
    from sqlalchemy import func, select

    from db.models import Consensus, Content
    from db.session import engine_for

    with engine_for(database_url).connect() as connection:
        agreed = connection.execute(select(func.count()).select_from(Consensus)).scalar_one()
        skipped = connection.execute(select(func.count(Content.skip_reason))).scalar_one()
    return int(agreed) + int(skipped)


def worker_env(
    model: Path,
    precision: str,
    processes: int,
    database_url: str,
    engine: str = "torch",
    engine_cache: Path | None = None,
    models: int = 1,
) -> dict[str, str]:
    """The settings a worker gets: model, engine, precision, cores shared among ``processes``; other
    defaults. An openvino worker reads the conversion the ceiling built in ``engine_cache``. ``models``
    above 1: VOLFEFE_MODELS lists the model that many times under other names (each worker holds that
    many copies warm and runs each on every post, as with several real models of FinBERT's size)."""
    from bench.common import machine

    cores = machine().cores
    extra = {"VOLFEFE_ENGINE_CACHE": str(engine_cache)} if engine_cache is not None else {}
    if models > 1:
        extra["VOLFEFE_MODELS"] = ",".join(
            ["finbert", *(f"copy{index}={model}" for index in range(2, models + 1))]
        )
    return child_env(
        FINBERT_MODEL=str(model),
        FINBERT_ENGINE=engine,
        FINBERT_PRECISION=precision,
        WORKER_PROCESSES=str(processes),
        TORCH_THREADS=str(max(1, cores // processes)),
        DATABASE_URL=database_url,
        **extra,
    )


@contextlib.contextmanager
def deployment(
    label: str,
    database: str,
    create_database: Callable[[str], str],
    drop_database: Callable[[str], None],
    texts: list[str],
    model: Path,
    precision: str,
    worker_count: int,
    work_dir: Path,
    engine: str = "torch",
    engine_cache: Path | None = None,
    models: int = 1,
) -> Iterator[Deployment]:
    """A fresh database with ``texts`` imported, a private Redis and ``worker_count`` warm workers."""
    from db.migrate import upgrade
    from db.session import engine_for
    from services.redis_server import RedisServer

    run_dir = work_dir / label
    run_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(run_dir / "redis")
    database_url: str | None = None
    setup: Deployment | None = None
    try:
        database_url = create_database(label)
        upgrade(database_url)
        ids = import_texts(database_url, texts, run_dir, "pipeline")
        redis.start()
        setup = Deployment(label, database, database_url, redis.url, precision, content_ids=ids)
        env = worker_env(model, precision, worker_count, database_url, engine, engine_cache, models)
        for index in range(worker_count):
            worker = WorkerProcess(redis.url, env, run_dir / f"worker-{index + 1}.log")
            setup.workers.append(worker)
            worker.start()
        log(f"{label}: waiting for {worker_count} worker(s) to load the model ({precision})")
        wait_until(
            lambda: all(worker.ready() or not worker.running for worker in setup.workers),
            READY_TIMEOUT,
            0.1,
            "the workers to load their model",
        )
        setup.assert_workers_alive()
        yield setup
    finally:
        with shielded_from_signals():
            if setup is not None:
                for worker in setup.workers:
                    worker.stop()
            redis.stop()
            if database_url is not None:
                engine_for(database_url).dispose()
                with contextlib.suppress(Exception):
                    drop_database(label)


def measure_throughput(setup: Deployment) -> dict[str, Any]:
    """Enqueue every content (the sweep) and time until all are stored; worker memory at the end."""
    from rq import Queue
    from rq.registry import FailedJobRegistry

    from jobs.sweep import sweep
    from services.redis_connection import connect

    connection = connect(setup.redis_url)
    total = len(setup.content_ids)
    deadline = time.monotonic() + STUCK_MARGIN + total / STUCK_RATE
    cpu_before = [cpu_seconds(worker.pid) for worker in setup.workers]
    models = len(setup.workers[0].env.get("VOLFEFE_MODELS", "finbert").split(","))
    started = time.perf_counter()
    report = sweep(
        connection, setup.database_url, models=["finbert", *(f"copy{i}" for i in range(2, models + 1))]
    )
    enqueue_seconds = time.perf_counter() - started
    next_check = time.monotonic() + 1.0
    while (done := done_count(setup.database_url)) < total:
        if time.monotonic() > next_check:
            setup.assert_workers_alive()
            next_check = time.monotonic() + 1.0
        if time.monotonic() > deadline:
            raise PipelineError(f"{setup.label}: only {done} of {total} stored before the deadline")
        time.sleep(POLL_INTERVAL)
    seconds = time.perf_counter() - started
    cpu = sum(
        cpu_seconds(worker.pid) - before for worker, before in zip(setup.workers, cpu_before, strict=True)
    )
    failed = FailedJobRegistry(queue=Queue(QUEUE, connection=connection)).count
    return {
        "label": setup.label,
        "database": setup.database,
        "workers": len(setup.workers),
        "threads_per_worker": int(setup.workers[0].env["TORCH_THREADS"]),
        "precision": setup.precision,
        "items": total,
        "enqueued": len(report.enqueued),
        "enqueue_seconds": enqueue_seconds,
        "seconds": seconds,
        "items_per_s": total / seconds if seconds > 0 else 0.0,
        "models": models,
        #: classifications stored per second: one per content and model.
        "classifications_per_s": total * models / seconds if seconds > 0 else 0.0,
        "failed_jobs": failed,
        # CPU the worker processes used during the run (model and everything else), per item, and as a
        # share of all cores over the run: well below 100% means the workers waited.
        "worker_cpu_ms_per_item": cpu * 1000 / total,
        "worker_cpu_share": cpu / (seconds * (os.cpu_count() or 1)),
        "worker_memory": [worker.memory() for worker in setup.workers],
    }
