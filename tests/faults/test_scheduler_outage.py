"""The scheduler under Redis faults (issue 13): ``python scheduler.py`` with its default intervals
against a real redis-server that is SIGKILLed, restarted with or without its data, or emptied.

Each scenario records: whether the scheduler is still running, what it logged, and the seconds
from Redis answering again to the hourly sweep registered again and to the catch-up sweep enqueued.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq_scheduler import Scheduler
from sqlalchemy import func, insert, select

from db.migrate import upgrade
from db.models import Classification, Content
from db.session import engine_for, session_scope
from jobs.queue import QUEUE_NAME
from jobs.schedule import ALIVE_MARKER, CATCH_UP_JOB_ID, SWEEP_JOB_ID
from jobs.scheduler_loop import DEFAULT_INTERVAL, DEFAULT_MAX_BACKOFF
from services.redis_server import RedisServer
from tests.faults.conftest import post_texts
from tests.processes import WorkerProcess, wait_for
from tests.scheduler_process import SWEEP_MOVED_LINE, SchedulerProcess, hours_struck

pytestmark = [pytest.mark.faults, pytest.mark.integration]

SCHEDULED = Scheduler.scheduled_jobs_key
QUEUE_KEY = f"rq:queue:{QUEUE_NAME}"
#: seconds Redis stays down in the long scenarios: longer than every backoff wait and than the
#: scheduler's key and lock TTLs (interval + 10 s).
LONG_OUTAGE = 25.0
#: seconds Redis stays down in the issue's "killed for 5 s" row.
SHORT_OUTAGE = 5.0
#: seconds between "still unreachable" lines in these runs (the default is a minute).
REMINDER = 10.0
#: seconds between two polls of Redis while measuring.
POLL = 0.02
#: seconds after which Redis must have the registration back: one pass, plus one backoff wait if
#: the scheduler saw the outage, plus slack for a loaded machine.
RECOVERY_LIMIT = DEFAULT_INTERVAL + DEFAULT_MAX_BACKOFF + 3


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server without persistence: a restart comes back empty."""
    server = RedisServer(tmp_path / "redis-volatile")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kill(server: RedisServer) -> float:
    """SIGKILL the server (no SHUTDOWN, no last write); the time it died."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not server.running, 10, what="redis-server to die")
    return time.monotonic()


def seconds_until(predicate: Callable[[], bool], since: float, timeout: float, what: str) -> float:
    wait_for(predicate, timeout, interval=POLL, what=what)
    return round(time.monotonic() - since, 2)


def registered(client: Redis) -> Callable[[], bool]:
    return lambda: client.zscore(SCHEDULED, SWEEP_JOB_ID) is not None


def catch_up_enqueued(client: Redis) -> Callable[[], bool]:
    return lambda: CATCH_UP_JOB_ID.encode() in client.lrange(QUEUE_KEY, 0, -1)


def start_scheduler(server: RedisServer, tmp_path: Path) -> tuple[SchedulerProcess, Redis]:
    """The scheduler with its default interval and backoff, once its first pass is done."""
    process = SchedulerProcess(server.url, tmp_path / "scheduler.log", "--reminder", str(REMINDER)).start()
    client = Redis.from_url(server.url)
    wait_for(lambda: client.exists(ALIVE_MARKER) == 1, 10, what="the first pass")
    client.delete(QUEUE_KEY)  # the first start's catch-up sweep: a worker's business, not this test's
    return process, client


@pytest.mark.slow
@pytest.mark.parametrize("persistence", ["appendonly", "none"])
def test_the_scheduler_outlives_a_redis_kill_longer_than_every_backoff(
    persistence: str, tmp_path: Path, record_metrics
) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=persistence == "appendonly")
    server.start()
    process, client = start_scheduler(server, tmp_path)
    started = time.time()
    try:
        time.sleep(1.5)  # appendfsync everysec: what the first pass wrote is on disk before the kill
        kill(server)
        wait_for(lambda: process.lines(r"unreachable \("), 15, what="the outage logged")
        time.sleep(LONG_OUTAGE)
        assert process.running, process.log()

        server.start()
        back = time.monotonic()
        client = Redis.from_url(server.url)
        noticed_s = seconds_until(lambda: process.lines("is back after"), back, RECOVERY_LIMIT, "Redis back")
        registered_s = seconds_until(registered(client), back, RECOVERY_LIMIT, "the registration")
        catch_up_s = None
        if persistence == "none":
            catch_up_s = seconds_until(catch_up_enqueued(client), back, RECOVERY_LIMIT, "the catch-up sweep")

        # Still at work: the hour strikes, the sweep is moved onto the queue within one pass.
        client.zadd(SCHEDULED, {SWEEP_JOB_ID: time.time() - 1}, xx=True)
        moved_s = seconds_until(
            lambda: (client.zscore(SCHEDULED, SWEEP_JOB_ID) or 0) > time.time(),
            time.monotonic(),
            DEFAULT_INTERVAL + 3,
            "the due sweep moved and scheduled for the next hour",
        )
        queued = client.lrange(QUEUE_KEY, 0, -1)
        moves = len(process.lines(SWEEP_MOVED_LINE))
        alive = process.running
        record_metrics(
            f"scheduler: redis-server (persistence {persistence}) SIGKILLed for {LONG_OUTAGE:g} s",
            scheduler_alive=alive,
            outage_lines=len(process.lines(r"unreachable \(")),
            reminder_lines=len(process.lines("still unreachable")),
            back_lines=len(process.lines("is back after")),
            back_to_noticed_s=noticed_s,
            back_to_registered_s=registered_s,
            back_to_catch_up_enqueued_s=catch_up_s,
            due_sweep_moved_s=moved_s,
            registrations=client.zcard(SCHEDULED),
        )
        assert alive, process.log()
        assert len(process.lines(r"unreachable \(")) == 1, process.log()
        assert len(process.lines("still unreachable")) >= 2, "a reminder every 10 s of a 25 s outage"
        assert len(process.lines("is back after")) == 1, process.log()
        assert client.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
        # One move for the forced hour, one more only if the real hour struck meanwhile; each move
        # puts the sweep on the queue exactly once.
        assert 1 <= moves <= 1 + hours_struck(started, time.time()), process.log()
        assert queued.count(SWEEP_JOB_ID.encode()) == moves, (queued, process.log())
        assert queued.count(CATCH_UP_JOB_ID.encode()) == (1 if persistence == "none" else 0), queued
    finally:
        process.stop()
        client.close()
        server.stop()


def test_redis_restarted_without_persistence_gets_the_sweep_back(
    volatile_redis: RedisServer, tmp_path: Path, record_metrics
) -> None:
    """The issue's row: a Redis without persistence killed for 5 s loses every job and, until now,
    the hourly sweep's registration for good."""
    process, client = start_scheduler(volatile_redis, tmp_path)
    try:
        kill(volatile_redis)
        time.sleep(SHORT_OUTAGE)
        volatile_redis.start()
        back = time.monotonic()
        client = Redis.from_url(volatile_redis.url)
        registered_s = seconds_until(registered(client), back, RECOVERY_LIMIT, "the registration")
        catch_up_s = seconds_until(catch_up_enqueued(client), back, RECOVERY_LIMIT, "the catch-up sweep")
        time.sleep(1.0)  # a scheduler that doubled something would have done it by now
        record_metrics(
            f"scheduler: redis-server (no persistence) SIGKILLed for {SHORT_OUTAGE:g} s",
            scheduler_alive=process.running,
            back_to_registered_s=registered_s,
            back_to_catch_up_enqueued_s=catch_up_s,
            registrations=client.zcard(SCHEDULED),
            catch_up_jobs=client.lrange(QUEUE_KEY, 0, -1).count(CATCH_UP_JOB_ID.encode()),
        )
        assert process.running, process.log()
        assert client.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
        assert client.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()]
    finally:
        process.stop()
        client.close()


def test_flushall_under_a_running_scheduler_is_noticed_within_one_pass(
    volatile_redis: RedisServer, tmp_path: Path, record_metrics
) -> None:
    """No disconnection at all: only the periodic check of the marker can see this loss."""
    process, client = start_scheduler(volatile_redis, tmp_path)
    try:
        client.flushall()
        flushed = time.monotonic()
        registered_s = seconds_until(registered(client), flushed, DEFAULT_INTERVAL + 3, "the registration")
        catch_up_s = seconds_until(catch_up_enqueued(client), flushed, DEFAULT_INTERVAL + 3, "the catch-up")
        record_metrics(
            "scheduler: FLUSHALL under a running scheduler",
            flush_to_registered_s=registered_s,
            flush_to_catch_up_enqueued_s=catch_up_s,
        )
        assert process.running
        assert client.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
        assert client.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()]
    finally:
        process.stop()
        client.close()


#: posts of the end-to-end scenario: enough that the kill comes while most are still queued.
POSTS = 1500
#: small batches: more Redis round trips per post, so the kill meets the run in the middle.
SMALL_BATCHES = {"FINBERT_BATCH_SIZE": "4", "WORKER_BATCH_JOBS": "4"}
#: seconds from Redis back to the last post stored (issue 13's goal).
RECOVERY_GOAL = 60.0


def add_posts(database_url: str, count: int) -> None:
    with session_scope(database_url) as session:
        rows = [
            {"source": "scheduler", "external_id": f"s{i}", "text": t}
            for i, t in enumerate(post_texts(count))
        ]
        session.execute(insert(Content), rows)


def classified(database_url: str) -> tuple[int, int, float]:
    """(classification rows, distinct contents classified, epoch seconds of the newest row)."""
    with session_scope(database_url) as session:
        rows, contents, newest = session.execute(
            select(
                func.count(),
                func.count(func.distinct(Classification.content_id)),
                func.max(Classification.created_at),
            )
        ).one()
    return rows, contents, newest.timestamp() if newest else 0.0


@pytest.mark.slow
def test_posts_whose_jobs_vanished_are_classified_once_redis_comes_back_empty(
    postgres_url: str, tiny_model_dir: Path, volatile_redis: RedisServer, tmp_path: Path, record_metrics
) -> None:
    """The issue's row end to end: no enqueue by hand; the scheduler's catch-up sweep on a new Redis
    fills the queue, Redis (no persistence) is killed for 5 s mid-run, and the catch-up sweep after
    it brings back every post whose job vanished."""
    upgrade(postgres_url)
    add_posts(postgres_url, POSTS)
    worker = WorkerProcess(
        volatile_redis.url, postgres_url, tiny_model_dir, tmp_path / "worker.log", env=SMALL_BATCHES
    ).start()
    process = SchedulerProcess(volatile_redis.url, tmp_path / "scheduler.log").start()
    client = Redis.from_url(volatile_redis.url)
    try:
        wait_for(
            lambda: classified(postgres_url)[0] >= POSTS // 5, 120, interval=0.005, what="a fifth stored"
        )
        kill(volatile_redis)
        at_kill = classified(postgres_url)[0]
        assert at_kill < POSTS, "the kill came after the run: nothing was tested"
        time.sleep(SHORT_OUTAGE)
        volatile_redis.start()
        back_wall, back = time.time(), time.monotonic()
        client = Redis.from_url(volatile_redis.url)
        catch_up_s = seconds_until(
            lambda: client.exists(f"rq:job:{CATCH_UP_JOB_ID}") == 1,
            back,
            RECOVERY_LIMIT,
            "the catch-up sweep",
        )
        wait_for(lambda: classified(postgres_url)[1] == POSTS, 180, interval=0.2, what="every post stored")
        rows, contents, newest = classified(postgres_url)
        record_metrics(
            "scheduler: redis-server (no persistence) SIGKILLed for 5 s mid-run, worker and scheduler",
            posts=POSTS,
            stored_at_kill=at_kill,
            back_to_catch_up_enqueued_s=catch_up_s,
            back_to_last_post_stored_s=round(newest - back_wall, 1),
            rows=rows,
            doubled=rows - contents,
            worker_alive=worker.running,
            scheduler_alive=process.running,
        )
        assert rows == contents == POSTS
        assert worker.running, worker.log()[-3000:]
        assert process.running, process.log()
        assert newest - back_wall <= RECOVERY_GOAL
    finally:
        process.stop()
        worker.stop()
        client.close()
        engine_for(postgres_url).dispose()
