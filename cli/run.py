"""``volfefe run``: the main job end to end, through the queue, on embedded defaults.

Creates the tables, starts the worker processes and waits until their model is loaded (or stops,
having enqueued nothing, with the reason a worker gave), imports a posts file meanwhile, enqueues
every unclassified content, waits until every job has ended; then, when the database holds prices,
enqueues the reactions that are due (missing, or older than an import of prices that covers them: the
hourly sweep's rule) and waits for them and for those the classifications enqueued, so that the report
that follows has them. Prints the summaries and the report. Exit status 0 only when every content was
classified or skipped, every due reaction computed (or skipped) and every row imported.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from rq.worker import WorkerStatus

from cli.errors import EXIT_FAILURE
from cli.report import print_report
from config import Settings, default_torch_threads
from db.importer import import_file
from db.migrate import upgrade
from db.session import describe, session_scope
from errors import VolfefeError
from jobs.progress import ReactionSummary, summarize, summarize_reactions, wait_for_jobs
from jobs.react import prices_stored
from jobs.sweep import sweep, sweep_reactions
from model.model_marks import has_random_weights
from services.redis_connection import connect_for_jobs, embedded_redis_running, redis_url, stop_embedded_redis

SAMPLE_POSTS = Path(__file__).resolve().parent.parent / "data" / "sample_posts.csv"
#: seconds a worker gets to finish its batch after SIGTERM.
WORKER_STOP_TIMEOUT = 30
#: seconds the workers may take to load the model (a first run downloads ~440 MB from the hub).
MODEL_LOAD_TIMEOUT = 15 * 60
#: seconds between two looks at the workers' logs while they load the model.
READY_POLL_INTERVAL = 0.2
#: what a FinbertWorker logs once its model is loaded (``FinbertWorker.bootstrap``), with the model_version.
READY_LINE = re.compile(r"Worker: (model \S+ \S+(?:, model \S+ \S+)*) loaded in ")
#: one model of READY_LINE: its name and model_version.
READY_MODEL = re.compile(r"model (\S+) ([^\s,]+)")
#: RQ's log lines start with the time.
_LOG_TIME = re.compile(r"^\d\d:\d\d:\d\d ")


class WorkersDied(VolfefeError):
    """The worker processes exited (or never got ready); the message is the reason one of them gave."""


def worker_command(queue_name: str) -> list[str]:
    """The worker command; the Redis URL goes in RQ_REDIS_URL, not argv (``ps`` would show a password).

    ``rq`` is the one beside this Python, so that it runs without the virtualenv on the PATH.
    """
    rq = str(Path(sys.executable).with_name("rq"))
    return [rq, "worker", queue_name, "-w", "workers.FinbertWorker", "--with-scheduler"]


def start_workers(config: Settings, url: str, count: int, log_dir: Path) -> list[subprocess.Popen]:
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WORKER_PROCESSES": str(count),
        "TORCH_THREADS": os.environ.get("TORCH_THREADS") or str(default_torch_threads(count)),
        "DATABASE_URL": config.database_url,
        "VOLFEFE_QUEUE": config.queue_name,
        "RQ_REDIS_URL": url,
        "TOKENIZERS_PARALLELISM": "false",
    }
    workers = []
    for index in range(count):
        with (log_dir / f"worker-{index + 1}.log").open("w") as log:
            workers.append(
                subprocess.Popen(
                    worker_command(config.queue_name), env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
    return workers


def _log_lines(log_dir: Path) -> list[str]:
    return [
        line.strip()
        for log in sorted(log_dir.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if line.strip()
    ]


def _reason_from_log(log_dir: Path) -> str:
    """The line that says why the workers stopped: a FINBERT_* setting's error, else the last line."""
    lines = _log_lines(log_dir)
    chosen = next((line for line in lines if "FINBERT_" in line), lines[-1] if lines else "no output")
    return _LOG_TIME.sub("", chosen)


def _working_pids(connection: Redis, queue_name: str) -> set[int]:
    """Pids of the workers on ``queue_name`` that are in their work loop (idle or busy).

    Only then has RQ installed its signal handlers: it starts a worker's scheduler process first, so a
    SIGTERM between the two would kill the worker and leave its scheduler running on its own.
    """
    working = {WorkerStatus.IDLE.value, WorkerStatus.BUSY.value}
    workers = Worker.all(queue=Queue(queue_name, connection=connection))
    return {worker.pid for worker in workers if worker.pid and worker.get_state() in working}


def wait_until_ready(
    workers: list[subprocess.Popen],
    log_dir: Path,
    connection: Redis,
    queue_name: str,
    timeout: float = MODEL_LOAD_TIMEOUT,
) -> dict[str, str]:
    """Block until every worker has loaded its models and waits for jobs; return the model versions
    (name -> model_version, as the first worker logged them).

    WorkersDied, with the reason from the logs, as soon as one exits (or after ``timeout`` seconds).
    """
    deadline = time.monotonic() + timeout
    pids = {worker.pid for worker in workers}
    while True:
        if any(worker.poll() is not None for worker in workers):
            raise WorkersDied(f"a worker exited before its model was loaded: {_reason_from_log(log_dir)}")
        versions = [match[1] for line in _log_lines(log_dir) if (match := READY_LINE.search(line))]
        if len(versions) >= len(workers) and pids <= _working_pids(connection, queue_name):
            return dict(READY_MODEL.findall(versions[0]))
        if time.monotonic() > deadline:
            raise WorkersDied(f"the workers did not load the model within {timeout:g}s; see {log_dir}")
        time.sleep(READY_POLL_INTERVAL)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def react(connection: Redis, config: Settings, check: Callable[[], None]) -> ReactionSummary | None:
    """When the database holds prices: enqueue the reactions that are due and wait for them (a job the
    classifications enqueued has the same id: it is waited for, not doubled). None without prices."""
    with session_scope(config.database_url) as session:
        if not prices_stored(session):
            return None
    report = sweep_reactions(connection, config)
    print(f"reactions (prices are stored): {report.describe()}", flush=True)
    wait = wait_for_jobs(
        connection, report.job_ids, config.queue_name, show_progress=sys.stderr.isatty(), check=check
    )
    return summarize_reactions(connection, config.database_url, report, wait)


def run(config: Settings, posts: Path, worker_count: int) -> int:
    """The main job end to end; the exit status (0 only when everything was done)."""
    engine = "" if config.engine == "torch" else f"{config.engine} "
    models = ", ".join(f"{spec.name} {spec.source}" for spec in config.models)
    print(f"database {describe(config.database_url)}; model {models} ({engine}{config.precision})")
    upgrade(config.database_url)
    from model.warm import check_models_readable

    check_models_readable(config)  # a model that cannot be read: its one line, before anything starts
    if config.engine != "torch":  # converted here, in view, once; the workers then find it cached
        from model.engine_choice import prepare_engine

        for spec in config.models:
            print(
                f"converting the model{'' if len(config.models) == 1 else ' ' + spec.name} for "
                f"{config.engine} {config.precision} (once; cached)",
                flush=True,
            )
            choice = prepare_engine(config.for_model(spec))  # cannot be made: one warning line, torch
            if choice.folder is not None:
                print(f"conversion: {choice.folder}")
    embedded_here = config.redis_url is None and not embedded_redis_running(config.data_dir)
    url = redis_url(config)
    log_dir = config.data_dir / "logs"
    try:
        connection = connect_for_jobs(url)
        workers = start_workers(config, url, worker_count, log_dir)
        try:
            print(f"starting {worker_count} worker(s): loading the model (logs in {log_dir})", flush=True)
            # The import runs while the workers load the model; nothing is enqueued before it loaded.
            imported = import_file(config.database_url, posts)
            print(
                f"imported {posts.name}: inserted {imported.inserted}, "
                f"already present {imported.already_present}, rejected {len(imported.rejected)}"
            )
            for rejected in imported.rejected:
                print(f"{posts}:{rejected.line}: rejected: {rejected.reason}", file=sys.stderr)
            versions = wait_until_ready(workers, log_dir, connection, config.queue_name)
            print(", ".join(f"model {name} {version}" for name, version in versions.items()) + " loaded")
            if any(has_random_weights(version) for version in versions.values()):
                print("warning: a model has random weights: its labels are meaningless")
            report = sweep(connection, config.database_url, models=config.model_names)
            print(report.describe(), flush=True)

            def check_workers() -> None:
                if all(worker.poll() is not None for worker in workers):
                    raise WorkersDied(f"the workers exited: {_reason_from_log(log_dir)}")

            wait = wait_for_jobs(
                connection,
                report.job_ids,
                config.queue_name,
                show_progress=sys.stderr.isatty(),
                check=check_workers,
            )
            summary = summarize(connection, config.database_url, report, wait, config.model_names)
            for line in summary.lines():
                print(line, flush=True)
            reactions = react(connection, config, check_workers)
        finally:
            stop_workers(workers)
        for line in reactions.lines() if reactions is not None else []:
            print(line)
    finally:
        if embedded_here:
            stop_embedded_redis(config.data_dir)
    print()
    print_report(config.database_url)
    reacted = reactions is None or reactions.complete
    return 0 if summary.complete and reacted and not imported.rejected else EXIT_FAILURE
