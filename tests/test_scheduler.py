"""The scheduler: JSON jobs only, the hourly sweep registered once, a sweep after Redis lost its data,
two schedulers without double enqueues, and a clean stop. Real redis-server; ``python scheduler.py``
subprocesses where the process itself is under test (outages: tests/faults/test_scheduler_outage.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq_scheduler import Scheduler

import scheduler as scheduler_script
from jobs.json_scheduler import JsonJob, JsonScheduler
from jobs.queue import QUEUE_NAME
from jobs.schedule import (
    ALIVE_MARKER,
    CATCH_UP_JOB_ID,
    SWEEP_CRON,
    SWEEP_FUNCTION,
    SWEEP_JOB_ID,
    ScheduleCheck,
    alive_marker,
    catch_up_job_id,
    ensure_sweep_registered,
    keep_schedule,
    sweep_job_id,
    sweep_scheduler,
)
from jobs.scheduler_loop import Backoff, OutageLog
from services.redis_server import RedisServer, free_port
from tests.processes import wait_for
from tests.scheduler_process import PROJECT, SWEEP_MOVED_LINE, SchedulerProcess, hours_struck

SCHEDULED = Scheduler.scheduled_jobs_key
QUEUE_KEY = f"rq:queue:{QUEUE_NAME}"
#: a short pass for subprocess tests (seconds), so they see several passes in a second.
FAST = ("--interval", "0.2")


class RunsShell:
    """Unpickling this runs ``command`` (what a pickled job payload planted in Redis can do)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sweep_sched(connection: Redis) -> JsonScheduler:
    return sweep_scheduler(connection, QUEUE_NAME, interval=1)


def stored(connection: Redis, job_id: str) -> dict[str, bytes]:
    return {key.decode(): value for key, value in connection.hgetall(f"rq:job:{job_id}").items()}


def plant(
    connection: Redis, job_id: str, func: str, origin: str = QUEUE_NAME, serializer=None, **fields
) -> None:
    """A due entry in rq-scheduler's set, written by hand as anyone who can write to Redis could."""
    job = Job.create(
        func,
        connection=connection,
        id=job_id,
        origin=origin,
        status=JobStatus.SCHEDULED,
        serializer=serializer,
        **fields,
    )
    job.save()
    connection.zadd(SCHEDULED, {job_id: time.time() - 1})


def make_due(connection: Redis, job_id: str = SWEEP_JOB_ID) -> None:
    connection.zadd(SCHEDULED, {job_id: time.time() - 1}, xx=True)


# -- JSON jobs, and only our code decides what runs -------------------------------------------------


@pytest.mark.integration
def test_the_registered_sweep_is_stored_as_json(connection: Redis, sweep_sched: JsonScheduler) -> None:
    assert ensure_sweep_registered(sweep_sched) is True

    fields = stored(connection, SWEEP_JOB_ID)
    assert json.loads(zlib.decompress(fields["data"])) == [SWEEP_FUNCTION, None, [], {}]
    assert json.loads(fields["meta"])["cron_string"] == SWEEP_CRON
    assert fields["origin"].decode() == QUEUE_NAME
    job = Job.fetch(SWEEP_JOB_ID, connection=connection, serializer=JSONSerializer)
    assert job.func_name == SWEEP_FUNCTION


@pytest.mark.integration
def test_a_planted_pickle_is_never_unpickled(
    connection: Redis, sweep_sched: JsonScheduler, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "unpickled"
    payload = RunsShell(f"touch {marker}")
    plant(connection, "planted-pickle", SWEEP_FUNCTION, args=[payload], meta={"payload": payload})

    with caplog.at_level(logging.WARNING):
        moved = sweep_sched.enqueue_jobs()

    assert moved == []
    assert not marker.exists()
    assert connection.zscore(SCHEDULED, "planted-pickle") is None, "taken off the schedule"
    assert connection.lrange(QUEUE_KEY, 0, -1) == []
    assert "'planted-pickle' refused and taken off the schedule: its payload is not JSON" in caplog.text

    # The payload is live: rq-scheduler as shipped (pickle) runs it as soon as it reads the entry.
    plant(connection, "planted-pickle", SWEEP_FUNCTION, args=[payload], meta={"payload": payload})
    # It may fail after the payload ran: only the marker matters.
    with contextlib.suppress(Exception):
        Scheduler(queue_name=QUEUE_NAME, connection=connection).enqueue_jobs()
    assert marker.exists()


@pytest.mark.integration
def test_a_job_of_another_function_is_refused_and_another_queues_left_alone(
    connection: Redis, sweep_sched: JsonScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    plant(connection, "planted-system", "os.system", args=["id"], serializer=JSONSerializer)
    plant(connection, "other-queue-sweep", SWEEP_FUNCTION, origin="other_queue", serializer=JSONSerializer)

    with caplog.at_level(logging.WARNING):
        assert sweep_sched.enqueue_jobs() == []

    assert connection.zscore(SCHEDULED, "planted-system") is None
    assert "function 'os.system' is not a job of this project" in caplog.text
    assert connection.zscore(SCHEDULED, "other-queue-sweep") is not None, "left to its own scheduler"
    assert (
        connection.lrange(QUEUE_KEY, 0, -1) == [] and connection.lrange("rq:queue:other_queue", 0, -1) == []
    )


@pytest.mark.integration
def test_a_queue_class_named_in_job_meta_is_never_imported(
    connection: Redis, sweep_sched: JsonScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[str] = []
    monkeypatch.setattr("rq_scheduler.scheduler.import_attribute", imported.append)
    plant(
        connection,
        "meta-names-a-class",
        SWEEP_FUNCTION,
        meta={"queue_class_name": "tests.planted.EvilQueue"},
        serializer=JSONSerializer,
    )

    (moved,) = sweep_sched.enqueue_jobs()

    assert moved.id == "meta-names-a-class"
    assert imported == []
    assert connection.lrange(QUEUE_KEY, 0, -1) == [b"meta-names-a-class"]


@pytest.mark.integration
def test_a_due_sweep_is_moved_onto_the_queue_and_scheduled_for_the_next_hour(
    connection: Redis, sweep_sched: JsonScheduler
) -> None:
    ensure_sweep_registered(sweep_sched)
    make_due(connection)

    (moved,) = sweep_sched.enqueue_jobs()

    assert moved.id == SWEEP_JOB_ID
    assert connection.lrange(QUEUE_KEY, 0, -1) == [SWEEP_JOB_ID.encode()]
    due = connection.zscore(SCHEDULED, SWEEP_JOB_ID)
    assert due is not None and due % 3600 == 0 and 0 < due - time.time() <= 3600
    assert json.loads(zlib.decompress(stored(connection, SWEEP_JOB_ID)["data"]))[0] == SWEEP_FUNCTION


# -- the registration: once, current, and back after a loss ------------------------------------------


@pytest.mark.integration
def test_re_asserting_a_current_registration_keeps_it_and_its_due_time(
    connection: Redis, sweep_sched: JsonScheduler
) -> None:
    ensure_sweep_registered(sweep_sched)
    make_due(connection)
    due = connection.zscore(SCHEDULED, SWEEP_JOB_ID)

    assert ensure_sweep_registered(sweep_sched) is False
    assert connection.zrange(SCHEDULED, 0, -1, withscores=True) == [(SWEEP_JOB_ID.encode(), due)]


@pytest.mark.integration
def test_a_pickled_registration_from_before_json_jobs_is_rewritten(
    connection: Redis, sweep_sched: JsonScheduler
) -> None:
    Scheduler(queue_name=QUEUE_NAME, connection=connection).cron(
        SWEEP_CRON, func=SWEEP_FUNCTION, id=SWEEP_JOB_ID
    )

    assert ensure_sweep_registered(sweep_sched) is True

    assert connection.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
    assert json.loads(zlib.decompress(stored(connection, SWEEP_JOB_ID)["data"]))[0] == SWEEP_FUNCTION


@pytest.mark.integration
def test_keep_schedule_brings_everything_back_after_flushall(
    connection: Redis, sweep_sched: JsonScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    first = keep_schedule(sweep_sched)
    assert first == ScheduleCheck(sweep_registered=True, marker_missing=True, catch_up_enqueued=True)
    assert keep_schedule(sweep_sched) == ScheduleCheck(False, False, False)
    connection.lpop(QUEUE_KEY)  # a worker took the catch-up sweep

    connection.flushall()
    with caplog.at_level(logging.WARNING):
        after_loss = keep_schedule(sweep_sched)

    assert after_loss == ScheduleCheck(sweep_registered=True, marker_missing=True, catch_up_enqueued=True)
    assert connection.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
    assert connection.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()]
    assert connection.exists(ALIVE_MARKER) and connection.ttl(ALIVE_MARKER) == -1, "a marker without expiry"
    catch_up = JsonJob.fetch(CATCH_UP_JOB_ID, connection=connection)
    assert (catch_up.func_name, catch_up.args, catch_up.origin) == (SWEEP_FUNCTION, [], QUEUE_NAME)
    assert json.loads(zlib.decompress(stored(connection, CATCH_UP_JOB_ID)["data"]))[0] == SWEEP_FUNCTION
    assert "sweep enqueued now as 'sweep-after-redis-loss'" in caplog.text


@pytest.mark.integration
def test_schedulers_noticing_the_same_loss_enqueue_one_catch_up_sweep(connection: Redis) -> None:
    schedulers = [sweep_scheduler(connection, QUEUE_NAME, interval=1) for _ in range(3)]
    checks = []
    for scheduler in schedulers:
        connection.delete(ALIVE_MARKER)  # each one finds the marker missing
        checks.append(keep_schedule(scheduler))

    assert [check.catch_up_enqueued for check in checks] == [True, False, False]
    assert connection.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()]
    assert connection.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]


def test_ids_and_marker_carry_the_queue_name_unless_it_is_the_default() -> None:
    assert (sweep_job_id(QUEUE_NAME), catch_up_job_id(QUEUE_NAME), alive_marker(QUEUE_NAME)) == (
        "hourly-sweep",
        "sweep-after-redis-loss",
        "volfefe:scheduler:alive",
    )
    assert (sweep_job_id("db2"), catch_up_job_id("db2"), alive_marker("db2")) == (
        "hourly-sweep-db2",
        "sweep-after-redis-loss-db2",
        "volfefe:scheduler:alive:db2",
    )


# -- lock and liveness --------------------------------------------------------------------------------


@pytest.mark.integration
def test_only_the_holder_releases_the_lock(connection: Redis) -> None:
    first, second = (sweep_scheduler(connection, QUEUE_NAME, interval=1) for _ in range(2))
    assert first.acquire_lock() is True
    assert second.acquire_lock() is False

    connection.delete(first.scheduler_lock_key)  # the first one's lock expired during an outage
    assert second.acquire_lock() is True
    first.remove_lock()  # back from the outage, it must not free the second one's lock
    assert connection.get(second.scheduler_lock_key) == second.name.encode()

    second.remove_lock()
    assert connection.get(second.scheduler_lock_key) is None


@pytest.mark.integration
def test_keep_alive_registers_the_scheduler_again_after_a_loss(
    connection: Redis, sweep_sched: JsonScheduler
) -> None:
    sweep_sched.keep_alive()
    assert connection.hexists(sweep_sched.key, "birth")
    connection.flushall()

    sweep_sched.keep_alive()

    assert connection.hexists(sweep_sched.key, "birth")
    assert 0 < connection.ttl(sweep_sched.key) <= sweep_sched.key_ttl


# -- backoff and what the log says --------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_starts_over() -> None:
    backoff = Backoff(first=0.5, cap=5)
    assert [backoff.next() for _ in range(6)] == [0.5, 1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next() == 0.5


def test_an_outage_is_logged_once_then_as_reminders_then_once_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = OutageLog("redis://h:1/0", reminder=60, max_backoff=5, clock=lambda: now[0])
    error = ConnectionError("Error 111 connecting to h:1. Connection refused.")
    with caplog.at_level(logging.WARNING):
        outage.recovered()  # not down: nothing to say
        for now[0] in (100.0, 101.0, 130.0, 159.9):
            outage.failed(error)
        assert len(caplog.records) == 1
        now[0] = 160.0
        outage.failed(error)
        now[0] = 175.5
        outage.recovered()
        outage.recovered()

    assert [record.getMessage() for record in caplog.records] == [
        "Redis at redis://h:1/0 unreachable (Error 111 connecting to h:1. Connection refused.); "
        "trying again every 5 s at most until it is back",
        "Redis at redis://h:1/0 still unreachable after 60 s (Error 111 connecting to h:1. Connection refused.)",
        "Redis at redis://h:1/0 is back after 75.5 s",
    ]


# -- the scheduler process ----------------------------------------------------------------------------


def test_help_documents_the_intervals_and_bad_values_are_one_line() -> None:
    shown = subprocess.run(
        [sys.executable, "scheduler.py", "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0
    for option in ("--interval SECONDS", "--max-backoff SECONDS", "--reminder SECONDS", "--once"):
        assert option in shown.stdout

    bad = subprocess.run(
        [sys.executable, "scheduler.py", "--interval", "0"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "scheduler.py: error: argument --interval: '0': give a positive number of seconds"
    )


def test_a_url_that_is_not_redis_is_one_line_without_the_password(tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": "http://user:s3cret-word@example.invalid/0", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "scheduler.py"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "s3cret-word" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "scheduler.py: error: cannot use the Redis URL http://user:***@example.invalid/0: Redis URL must specify"
        )
    )


@pytest.mark.integration
def test_registering_the_sweep_twice_leaves_one_cron_entry(
    redis_url: str, connection: Redis, tmp_path: Path
) -> None:
    """Moved from test_queue_integration.py: restarts and a second scheduler never add an entry."""
    scheduler_script.register_sweep(connection)
    scheduler_script.register_sweep(connection)
    assert connection.zrange(SCHEDULED, 0, -1) == [b"hourly-sweep"]

    for index in range(2):
        SchedulerProcess(redis_url, tmp_path / f"scheduler-{index}.log").start().stop()

    entries = connection.zrange(SCHEDULED, 0, -1, withscores=True)
    assert [member for member, _score in entries] == [b"hourly-sweep"]
    (_, due), *_ = entries
    assert due % 3600 == 0 and 0 < due - time.time() <= 3600, "due at the top of the next hour"
    job = Job.fetch("hourly-sweep", connection=connection, serializer=JSONSerializer)
    assert job.func_name == scheduler_script.SWEEP_FUNCTION
    assert job.origin == QUEUE_NAME
    assert job.meta.get("cron_string") == "0 * * * *"


@pytest.mark.integration
def test_scheduler_prints_no_crontab_future_warning(redis_url: str, tmp_path: Path) -> None:
    """Moved from test_queue_integration.py. DESIGN decision 1: crontab's FutureWarning is filtered."""
    process = SchedulerProcess(redis_url, tmp_path / "scheduler.log").start()
    process.stop()

    assert "hourly sweep registered as 'hourly-sweep'" in process.log()
    assert "FutureWarning" not in process.log()


@pytest.mark.integration
def test_the_scheduler_process_refuses_a_planted_pickle_and_keeps_running(
    redis_url: str, connection: Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    payload = RunsShell(f"touch {marker}")
    with SchedulerProcess(redis_url, tmp_path / "scheduler.log", *FAST) as process:
        plant(connection, "planted-pickle", SWEEP_FUNCTION, args=[payload], meta={"payload": payload})
        wait_for(lambda: process.lines("'planted-pickle' refused"), 10, what="the planted job refused")

        make_due(connection)  # the scheduler still works: the hour strikes, the sweep is moved
        wait_for(
            lambda: connection.lrange(QUEUE_KEY, 0, -1).count(b"hourly-sweep") == 1,
            10,
            what="the sweep moved",
        )
        assert process.running

    assert not marker.exists()
    assert connection.zscore(SCHEDULED, "planted-pickle") is None


@pytest.mark.integration
def test_two_schedulers_register_once_and_never_enqueue_twice(
    redis_url: str, connection: Redis, tmp_path: Path
) -> None:
    rounds = 5
    with (
        SchedulerProcess(redis_url, tmp_path / "a.log", *FAST) as first,
        SchedulerProcess(redis_url, tmp_path / "b.log", *FAST) as second,
    ):
        assert connection.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()], "one catch-up for both"
        connection.delete(QUEUE_KEY)
        pushed = 0
        for _ in range(rounds):
            round_started = time.time()
            make_due(connection)
            wait_for(
                lambda: (connection.zscore(SCHEDULED, SWEEP_JOB_ID) or 0) > time.time(),
                10,
                what="the due sweep moved and scheduled for the next hour",
            )
            time.sleep(1.0)  # five passes of each scheduler: room for a second move, if any
            queued = connection.lrange(QUEUE_KEY, 0, -1)
            connection.delete(QUEUE_KEY)
            # the forced move, and one more only if the real hour struck during the round
            assert set(queued) == {SWEEP_JOB_ID.encode()}, queued
            assert 1 <= len(queued) <= 1 + hours_struck(round_started, time.time()), queued
            pushed += len(queued)

        connection.flushall()  # both find the marker missing: one catch-up, one registration
        wait_for(lambda: connection.exists(ALIVE_MARKER), 10, what="the marker written again")
        time.sleep(1.0)
        assert connection.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()]
        assert connection.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
        assert first.running and second.running

    moves = first.lines(SWEEP_MOVED_LINE) + second.lines(SWEEP_MOVED_LINE)
    assert len(moves) == pushed, "each move pushed the sweep once, by one scheduler"


@pytest.mark.integration
def test_sigterm_stops_the_scheduler_at_once_with_exit_0(
    redis_url: str, connection: Redis, tmp_path: Path
) -> None:
    process = SchedulerProcess(redis_url, tmp_path / "scheduler.log").start()  # default 10 s passes
    name = connection.keys("rq:scheduler_instance:*")[0]

    code, seconds = process.terminate()

    assert code == 0, process.log()
    assert seconds < 3, f"took {seconds:.1f} s"
    assert "scheduler stopped" in process.log()
    assert connection.hexists(name, "death")
    assert connection.get(Scheduler.scheduler_lock_key) is None


@pytest.mark.integration
def test_a_scheduler_started_before_redis_waits_for_it_and_sigterm_stops_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", port=free_port())
    waiting = SchedulerProcess(server.url, tmp_path / "waiting.log", "--max-backoff", "1").start(
        wait_running=False
    )
    with_password = server.url.replace("redis://", "redis://:s3cret-word@")
    stopped = SchedulerProcess(with_password, tmp_path / "stopped.log").start(wait_running=False)
    try:
        for process in (waiting, stopped):
            wait_for(lambda process=process: process.lines("unreachable"), 30, what="the outage logged")

        code, seconds = stopped.terminate()
        assert code == 0 and seconds < 3, (code, seconds, stopped.log())
        assert "s3cret-word" not in stopped.log() and "redis://:***@127.0.0.1" in stopped.log()

        server.start()
        client = Redis.from_url(server.url)
        try:
            wait_for(lambda: client.exists(ALIVE_MARKER) == 1, 10, what="a pass after Redis started")
            assert client.zrange(SCHEDULED, 0, -1) == [SWEEP_JOB_ID.encode()]
            assert client.lrange(QUEUE_KEY, 0, -1) == [CATCH_UP_JOB_ID.encode()]
        finally:
            client.close()
        assert waiting.running
        assert len(waiting.lines(r"unreachable \(Error 111")) == 1
        assert len(waiting.lines("is back after")) == 1
    finally:
        waiting.stop()
        stopped.stop()
        server.stop()
