"""Network partitions (issue 19): a worker's route to Redis or to PostgreSQL black-holed, with another
worker on the healthy side, and a SIGTERM during each such outage.

The cut goes through ``tests.faults.blackhole.BlackHoleProxy``: nothing forwarded, nothing closed, as a
client sees a lost route. What makes these pass is the connections' bounds (``REDIS_SOCKET_TIMEOUT``,
PostgreSQL's answer deadline), not a sleep: without them the cut worker waits forever inside a call.
Each scenario asserts the fault suite's accounting (lost 0, doubled 0, stranded 0), that the cut was
noticed within ``NOTICE_BOUND`` seconds, that every process is alive or cleanly exited, and, for the
partitions, that the cut worker resumed by itself: it finished a batch after the network healed.

The partitions last a minute (the issue's length, and longer than a batch's heartbeat, so that the
healthy side recovers the cut worker's batch); the stop scenarios end as soon as the process exits.
"""

from __future__ import annotations

import signal
import time

import pytest

from services.redis_server import RedisServer
from tests.faults.blackhole import BlackHoleProxy
from tests.faults.conftest import FaultRun, post_texts
from tests.faults.network_support import (
    NOTICE_BOUND,
    STOP_BOUND,
    LogWatch,
    children_of,
    database_through,
    gone_within,
    redis_through,
)
from tests.processes import WorkerProcess, wait_for
from tests.servers import PostgresServer

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: posts of the partition scenarios; enqueued during the cut (the healthy side's work); and of the
#: round after it, which shows the cut worker working again.
POSTS = 1500
DURING_POSTS = 300
MORE_POSTS = 600
#: seconds each partition lasts (the issue's).
PARTITION = 60.0
#: seconds for everything to settle once the network is back.
SETTLE = 150.0
#: the log lines that say an outage was noticed, and that it ended.
REDIS_CUT = "Redis is unreachable"
REDIS_BACK = "Redis is back"
DATABASE_CUT = "is unavailable"
DATABASE_BACK = "answers again"
FINISHED = "jobs in one batch"


def _start_pair(fault_run: FaultRun, **cut_urls: str) -> tuple[WorkerProcess, WorkerProcess]:
    """The cut worker (through the proxy) and the healthy one, loading their models side by side."""
    cut = fault_run.start_worker(wait_ready=False, **cut_urls)
    healthy = fault_run.start_worker(wait_ready=False)
    for worker in (cut, healthy):
        fault_run.wait(
            lambda worker=worker: "Worker: model" in worker.log() or not worker.running,
            90,
            "a worker to load",
        )
        assert worker.running, worker.log()[-3000:]
    return cut, healthy


def _caught_mid_batch(fault_run: FaultRun, proxy: BlackHoleProxy, watch: LogWatch) -> float:
    """Both workers mid-batch (their jobs started, held at their write); the cut begins, then the writes
    go on: the cut worker's next step needs the network it lost. Returns the monotonic time of the cut."""
    with fault_run.writes_held():
        fault_run.wait(lambda: fault_run.blocked_writers() >= 2, 60, "both workers mid-batch")
        watch.mark()
        proxy.pause()
        return time.monotonic()


def _resumes(fault_run: FaultRun, cut: WorkerProcess, expected: int) -> float:
    """Enqueue a second round; the cut worker must finish a batch of it. Returns the settle time."""
    watch = LogWatch(cut.log)
    watch.mark()
    more = fault_run.add_contents(post_texts(MORE_POSTS, seed=expected))
    fault_run.enqueue(more)
    watch.wait(FINISHED, 60, "the cut worker to finish a batch again")
    return fault_run.wait_settled(expected + MORE_POSTS, SETTLE)


def _partition(
    fault_run: FaultRun,
    record_metrics,
    scenario: str,
    proxy: BlackHoleProxy,
    cut_urls: dict[str, str],
    cut_line: str,
    back_line: str,
) -> None:
    ids = fault_run.add_contents(post_texts(POSTS, seed=41))
    cut, healthy = _start_pair(fault_run, **cut_urls)
    fault_run.enqueue(ids)
    fault_run.wait(lambda: fault_run.classified() >= POSTS // 10, 60, "a tenth of the posts classified")
    watch = LogWatch(cut.log)
    cut_at = _caught_mid_batch(fault_run, proxy, watch)
    noticed = watch.wait(cut_line, NOTICE_BOUND + 30, "the cut worker to notice the cut")
    fault_run.wait_settled(POSTS, 90, "the healthy worker to finish the first round, the cut batch too")
    during = fault_run.add_contents(post_texts(DURING_POSTS, seed=42))
    fault_run.enqueue(during)  # on the healthy side, while the cut lasts
    fault_run.wait_settled(
        POSTS + DURING_POSTS, 60, "the healthy worker to classify what came during the cut"
    )
    time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))  # the partition's length is the scenario
    alive_during = cut.running and healthy.running
    watch.mark()
    proxy.heal()
    back = watch.wait(back_line, 60, "the cut worker to see the network back")
    first_round = fault_run.wait_settled(POSTS + DURING_POSTS, SETTLE)
    settled = _resumes(fault_run, cut, POSTS + DURING_POSTS)
    result = fault_run.account()
    record_metrics(
        scenario,
        posts=POSTS + DURING_POSTS + MORE_POSTS,
        partition_s=PARTITION,
        noticed_after_s=round(noticed, 1),
        resumed_after_heal_s=round(back, 1),
        settled_after_heal_s=round(back + first_round, 1),
        attempts_used=fault_run.retried_jobs(ids),
        workers_alive=sum(worker.running for worker in fault_run.workers),
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
        failed=len(result.failed),
        second_round_settled_s=round(settled, 1),
    )
    assert noticed <= NOTICE_BOUND, f"noticed after {noticed:.1f} s\n{fault_run.logs()}"
    assert alive_during and cut.running and healthy.running, fault_run.logs()
    assert result.lost == [] and result.doubled == [] and result.stranded == [], (
        f"{result}\n{fault_run.logs()}"
    )
    assert result.failed == [] and result.classified == POSTS + DURING_POSTS + MORE_POSTS, result


@pytest.mark.slow
def test_redis_partition_of_a_minute_mid_batch(
    fault_run: FaultRun, redis_server: RedisServer, record_metrics
) -> None:
    with BlackHoleProxy(("127.0.0.1", redis_server.port)) as proxy:
        _partition(
            fault_run,
            record_metrics,
            "net 1 redis partition 60 s mid-batch",
            proxy,
            {"redis_url": redis_through(proxy)},
            REDIS_CUT,
            REDIS_BACK,
        )


@pytest.mark.slow
def test_postgres_partition_of_a_minute_mid_write(
    fault_run: FaultRun, postgres_server: PostgresServer, record_metrics
) -> None:
    with BlackHoleProxy(("127.0.0.1", postgres_server.port)) as proxy:
        _partition(
            fault_run,
            record_metrics,
            "net 2 postgres partition 60 s mid-write",
            proxy,
            {"database_url": database_through(fault_run.database_url, proxy)},
            DATABASE_CUT,
            DATABASE_BACK,
        )


def _sigterm_during_cut(
    fault_run: FaultRun, record_metrics, scenario: str, proxy: BlackHoleProxy, **urls: str
) -> None:
    """The cut worker is mid-batch when its route goes; one SIGTERM; it must exit (0) within
    STOP_BOUND, its scheduler process with it, and the healthy worker must end up with every post."""
    posts = POSTS // 2
    ids = fault_run.add_contents(post_texts(posts, seed=43))
    cut, _healthy = _start_pair(fault_run, **urls)
    fault_run.enqueue(ids)
    fault_run.wait(lambda: fault_run.classified() >= posts // 10, 60, "a tenth of the posts classified")
    watch = LogWatch(cut.log)
    assert cut.pid is not None and cut.process is not None
    family = children_of(cut.pid)  # its scheduler process
    _caught_mid_batch(fault_run, proxy, watch)
    cut.signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    try:
        exit_code = cut.process.wait(STOP_BOUND + 30)
    except Exception:
        exit_code = None
    stop_s = time.monotonic() - signalled_at
    left = gone_within(family, 5)
    settled = fault_run.wait_settled(posts, SETTLE)
    result = fault_run.account()
    record_metrics(
        scenario,
        posts=posts,
        stop_s=round(stop_s, 1),
        exit_code=exit_code,
        children_left=len(left),
        settled_after_stop_s=round(settled, 1),
        attempts_used=fault_run.retried_jobs(ids),
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
    )
    assert exit_code == 0 and stop_s <= STOP_BOUND, (
        f"exit {exit_code} after {stop_s:.1f} s\n{cut.log()[-4000:]}"
    )
    assert left == [], f"the scheduler process outlived its worker: {left}"
    assert result.lost == [] and result.doubled == [] and result.stranded == [], (
        f"{result}\n{fault_run.logs()}"
    )
    assert result.classified == posts, result


def test_sigterm_while_the_workers_redis_is_cut_mid_batch(
    fault_run: FaultRun, redis_server: RedisServer, record_metrics
) -> None:
    with BlackHoleProxy(("127.0.0.1", redis_server.port)) as proxy:
        _sigterm_during_cut(
            fault_run,
            record_metrics,
            "net 3 SIGTERM, redis cut mid-batch",
            proxy,
            redis_url=redis_through(proxy),
        )


def test_sigterm_while_the_workers_database_is_cut_mid_write(
    fault_run: FaultRun, postgres_server: PostgresServer, record_metrics
) -> None:
    with BlackHoleProxy(("127.0.0.1", postgres_server.port)) as proxy:
        _sigterm_during_cut(
            fault_run,
            record_metrics,
            "net 4 SIGTERM, postgres cut mid-write",
            proxy,
            database_url=database_through(fault_run.database_url, proxy),
        )


def test_the_scheduler_process_dies_with_its_worker(fault_run: FaultRun, record_metrics) -> None:
    """SIGKILL to the worker alone (not its group): its scheduler process goes too, at once."""
    worker = fault_run.start_worker()
    assert worker.pid is not None
    wait_for(lambda: bool(children_of(worker.pid or 0)), 30, what="the worker's scheduler process")
    family = children_of(worker.pid)
    worker.kill()
    started = time.monotonic()
    left = gone_within(family, 10)
    record_metrics(
        "net 5 worker SIGKILL: scheduler process",
        children=len(family),
        left=len(left),
        gone_after_s=round(time.monotonic() - started, 2),
    )
    assert left == [], f"left behind: {left}"
