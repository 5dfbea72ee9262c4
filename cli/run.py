"""``volfefe run``: the main job end to end, through the queue, on embedded defaults.

Imports a posts file, enqueues every unclassified content, runs worker processes until every job
has ended, then prints the summary and the report.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from cli.report import print_report
from config import Settings
from db.importer import import_file
from db.migrate import upgrade
from db.session import describe
from jobs.progress import summarize, wait_for_jobs
from jobs.queue import QUEUE_NAME
from jobs.sweep import sweep
from services.redis_connection import (
    connect,
    embedded_redis_running,
    redis_url,
    stop_embedded_redis,
)

SAMPLE_POSTS = Path(__file__).resolve().parent.parent / "data" / "sample_posts.csv"
#: seconds a worker gets to finish its batch after SIGTERM.
WORKER_STOP_TIMEOUT = 30


class WorkersDied(RuntimeError):
    """Every worker process exited before the jobs were done."""


#: the worker command; the Redis URL goes in RQ_REDIS_URL, not argv (``ps`` would show a password).
WORKER_COMMAND = ["rq", "worker", QUEUE_NAME, "-w", "workers.FinbertWorker", "--with-scheduler"]


def start_workers(config: Settings, url: str, count: int, log_dir: Path) -> list[subprocess.Popen]:
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WORKER_PROCESSES": str(count),
        "TORCH_THREADS": str(max(1, (os.cpu_count() or 1) // count)),
        "DATABASE_URL": config.database_url,
        "RQ_REDIS_URL": url,
        "TOKENIZERS_PARALLELISM": "false",
    }
    workers = []
    for index in range(count):
        log = (log_dir / f"worker-{index + 1}.log").open("w")
        workers.append(subprocess.Popen(WORKER_COMMAND, env=env, stdout=log, stderr=subprocess.STDOUT))
    return workers


def _reason_from_log(log_dir: Path) -> str:
    """The line that says why the workers stopped: a FINBERT_* setting's error, else the last line."""
    lines = [
        line.strip()
        for log in sorted(log_dir.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if line.strip()
    ]
    chosen = next((line for line in lines if "FINBERT_" in line), lines[-1] if lines else "no output")
    return re.sub(r"^\d\d:\d\d:\d\d ", "", chosen)  # RQ's log lines start with the time


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


def run(config: Settings, posts: Path, worker_count: int) -> int:
    print(f"database {describe(config.database_url)}; model {config.model} ({config.precision})")
    upgrade(config.database_url)
    imported = import_file(config.database_url, posts)
    print(
        f"imported {posts.name}: inserted {imported.inserted}, already present {imported.already_present}, "
        f"rejected {len(imported.rejected)}"
    )
    embedded_here = config.redis_url is None and not embedded_redis_running(config.data_dir)
    url = redis_url(config)
    try:
        connection = connect(url)
        report = sweep(connection, config.database_url)
        print(report.describe())
        log_dir = config.data_dir / "logs"
        workers = start_workers(config, url, worker_count, log_dir)
        try:

            def check_workers() -> None:
                if all(worker.poll() is not None for worker in workers):
                    raise WorkersDied(f"the workers exited: {_reason_from_log(log_dir)}")

            elapsed = wait_for_jobs(connection, report.job_ids, sys.stderr.isatty(), check=check_workers)
        finally:
            stop_workers(workers)
        for line in summarize(connection, report.job_ids, elapsed).lines():
            print(line)
    finally:
        if embedded_here:
            stop_embedded_redis(config.data_dir)
    print()
    print_report(config.database_url)
    return 0
