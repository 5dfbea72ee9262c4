"""Redis under memory pressure (issue 19).

- ``maxmemory`` with ``noeviction``: ``enqueue.py --all`` of more than fits enqueues what fits, says so
  in one line and exits 1, its summary counting only the jobs really in Redis; a busy worker that meets
  the refused writes waits for room as for an outage, and resumes by itself when there is room (here:
  the operator raises ``maxmemory``); enqueueing again then takes the rest. Lost 0, doubled 0.
- An evicting ``maxmemory-policy``: the processes that write jobs refuse to start, in one line; those
  that only watch or schedule warn in one line and run (``services.redis_memory`` says why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from db.migrate import upgrade
from jobs.queue import classification_queue
from services.redis_server import RedisServer
from tests.faults.conftest import FaultRun, post_texts
from tests.faults.network_support import LogWatch
from tests.processes import WorkerProcess, wait_for
from tests.scheduler_process import SchedulerProcess
from tests.servers import PostgresServer

pytestmark = [pytest.mark.faults, pytest.mark.integration]

PROJECT = Path(__file__).resolve().parents[2]
POSTS = 6000
#: bytes of room left above what an empty, bound queue uses: a few thousand jobs' worth, not all.
ROOM = 3 * 1024 * 1024
OOM_LINE = "Redis refuses writes, out of memory"
VOLFEFE = str(Path(sys.executable).with_name("volfefe"))


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-small")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``args`` run by this Python (a script) or, for ``volfefe``, by the project's command."""
    program = [VOLFEFE] if args[0] == "volfefe" else [sys.executable]
    return subprocess.run(
        [*program, *args[args[0] == "volfefe" :]],
        cwd=PROJECT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_enqueue_beyond_maxmemory_enqueues_what_fits_and_workers_wait_for_room(
    small_redis: RedisServer,
    postgres_server: PostgresServer,
    postgres_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    record_metrics,
) -> None:
    upgrade(postgres_url)
    run = FaultRun(postgres_url, small_redis.url, tiny_model_dir, tmp_path, postgres_server)
    admin = redis.Redis.from_url(small_redis.url)
    try:
        run.add_contents(post_texts(POSTS, seed=61))
        worker = run.start_worker()
        watch = LogWatch(worker.log)
        watch.mark()
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", str(used + ROOM))
        env = {"DATABASE_URL": postgres_url, "REDIS_URL": small_redis.url}
        first = _command("enqueue.py", "--all", env=env)
        errors = first.stderr.strip().splitlines()
        waited = watch.wait(OOM_LINE, 120, "the worker to meet the full Redis")
        queue = classification_queue(admin)
        enqueued = (
            int(first.stdout.split("enqueued ", 1)[1].split(",", 1)[0].split()[0])
            if "enqueued " in first.stdout
            else -1
        )
        in_redis = len([key for key in admin.scan_iter(match="rq:job:classify-content-*", count=1000)])
        alive_while_full = worker.running
        admin.config_set("maxmemory", "0")  # the operator makes room
        watch.mark()
        watch.wait("Redis is back", 60, "the worker to write again")
        run.wait(lambda: run.live_jobs() == 0 and queue.count == 0, 120, "the worker to finish what fitted")
        second = _command("enqueue.py", "--all", env=env)
        run.wait_settled(POSTS, 240, "every post after the second enqueue")
        result = run.account()
        record_metrics(
            "net 7 redis maxmemory noeviction",
            posts=POSTS,
            maxmemory_room_bytes=ROOM,
            first_exit=first.returncode,
            first_enqueued=enqueued,
            job_hashes_in_redis=in_redis,
            worker_met_oom_after_s=round(waited, 1),
            second_exit=second.returncode,
            lost=len(result.lost),
            doubled=len(result.doubled),
            stranded=len(result.stranded),
            failed=len(result.failed),
        )
        assert first.returncode == 1 and len(errors) == 1, (first.stdout, first.stderr)
        assert errors[0].startswith("enqueue.py: error: Redis refused more jobs, it is out of memory"), errors
        assert "Traceback" not in first.stderr
        assert 0 < enqueued < POSTS and enqueued == in_redis, (first.stdout, in_redis)
        assert alive_while_full and worker.running, worker.log()[-3000:]
        assert second.returncode == 0, (second.stdout, second.stderr)
        assert result.lost == [] and result.doubled == [] and result.stranded == [], result
        assert result.classified == POSTS and not result.failed, result
    finally:
        admin.close()
        for worker in run.workers:
            if worker.running:
                worker.stop(timeout=15)
            run.kill_group(worker)


def test_an_evicting_policy_is_refused_by_job_writers_and_warned_by_watchers(
    small_redis: RedisServer, sqlite_url: str, tiny_model_dir: Path, tmp_path: Path, record_metrics
) -> None:
    upgrade(sqlite_url)
    admin = redis.Redis.from_url(small_redis.url)
    admin.config_set("maxmemory", str(100 * 1024 * 1024))
    admin.config_set("maxmemory-policy", "allkeys-lru")
    env = {
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": small_redis.url,
        "VOLFEFE_DATA_DIR": str(tmp_path / "var"),
    }
    enqueue = _command("enqueue.py", "--ids", "1", env=env)
    status = _command("volfefe", "status", env=env)
    worker = WorkerProcess(small_redis.url, sqlite_url, tiny_model_dir, tmp_path / "worker.log")
    worker.start(wait_ready=False)
    assert worker.process is not None
    worker_exit = worker.process.wait(60)
    scheduler = SchedulerProcess(small_redis.url, tmp_path / "scheduler.log").start()
    try:
        wait_for(
            lambda: "maxmemory-policy allkeys-lru" in scheduler.log(), 30, what="the scheduler's warning"
        )
        scheduler_running = scheduler.running
    finally:
        scheduler.stop()
    record_metrics(
        "net 8 redis evicting policy",
        enqueue_exit=enqueue.returncode,
        worker_exit=worker_exit,
        status_exit=status.returncode,
        scheduler_running=scheduler_running,
    )
    lines = enqueue.stderr.strip().splitlines()
    assert enqueue.returncode == 1 and len(lines) == 1 and "maxmemory-policy allkeys-lru" in lines[0], (
        enqueue.stderr
    )
    assert "set maxmemory-policy noeviction" in lines[0]
    assert worker_exit == 1 and "maxmemory-policy allkeys-lru" in worker.log(), worker.log()[-3000:]
    assert "Traceback" not in worker.log() and "Worker: model" not in worker.log()  # refused before loading
    assert status.returncode == 0 and "warning: Redis deletes keys" in status.stdout, (
        status.stdout,
        status.stderr,
    )
    assert scheduler_running and scheduler.log().count("maxmemory-policy allkeys-lru") == 1, scheduler.log()
    admin.close()
