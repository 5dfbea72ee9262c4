"""Stop means stop (issue 19): one SIGTERM ends every process within ``STOP_BOUND`` seconds whatever
the state of Redis: ``rq worker-pool`` (its workers and their scheduler processes with it),
``scheduler.py`` and ``volfefe web`` on a black-holed Redis, and a worker whose Redis is down.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from db.migrate import upgrade
from services.redis_server import RedisServer
from tests.faults.blackhole import BlackHoleProxy
from tests.faults.conftest import FaultRun, post_texts
from tests.faults.network_support import STOP_BOUND, children_of, gone_within, log_tail, redis_through
from tests.faults.outage_support import end_process_group, start_worker_pool
from tests.processes import wait_for
from tests.scheduler_process import SchedulerProcess
from tests.web_process import WebProcess, basic_auth, request, web_environment

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def _exit_within(process: subprocess.Popen[bytes], signalled_at: float) -> tuple[int | None, float]:
    try:
        code = process.wait(max(1.0, STOP_BOUND + 20 - (time.monotonic() - signalled_at)))
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - signalled_at


def _exits(
    processes: dict[str, subprocess.Popen[bytes]], signalled_at: float
) -> dict[str, tuple[int | None, float]]:
    """Each process's exit code and seconds from the signal to its exit (None: still running at the end)."""
    ended: dict[str, tuple[int | None, float]] = {}
    while len(ended) < len(processes) and time.monotonic() - signalled_at < STOP_BOUND + 20:
        for name, process in processes.items():
            if name not in ended and process.poll() is not None:
                ended[name] = (process.returncode, time.monotonic() - signalled_at)
        time.sleep(0.05)
    return {name: ended.get(name, (None, time.monotonic() - signalled_at)) for name in processes}


def _request_quietly(url: str, headers: dict[str, str]) -> None:
    with contextlib.suppress(OSError):  # the server goes away mid-request: that is the test
        request(url, headers=headers)


def test_one_sigterm_ends_pool_scheduler_and_web_on_a_black_holed_redis(
    redis_server: RedisServer,
    redis_url: str,
    sqlite_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    record_metrics,
) -> None:
    upgrade(sqlite_url)
    with BlackHoleProxy(("127.0.0.1", int(redis_server.port or 0))) as proxy:
        url = redis_through(proxy)
        pool_log = tmp_path / "pool.log"
        pool = start_worker_pool(url, sqlite_url, tiny_model_dir, pool_log)
        scheduler = SchedulerProcess(url, tmp_path / "scheduler.log")
        web = WebProcess(
            web_environment(tmp_path / "var", url, RQ_DASHBOARD_USERNAME="u", RQ_DASHBOARD_PASSWORD="p"),
            tmp_path / "web.log",
        )
        try:
            wait_for(
                lambda: "Worker: model" in pool_log.read_text(errors="replace") or pool.poll() is not None,
                90,
                what="the pool's worker to load its model",
            )
            assert pool.poll() is None, log_tail(pool_log)
            scheduler.start()
            web.start()
            assert scheduler.process is not None and web.process is not None
            family = children_of(pool.pid)  # the pool's worker and its scheduler process
            assert len(family) >= 2, family
            proxy.pause()
            # A page that needs Redis is being served when the stop comes.
            hanging = threading.Thread(
                target=_request_quietly, args=(web.base + "/rq/", basic_auth("u", "p")), daemon=True
            )
            hanging.start()
            time.sleep(1.0)  # the cut's shape: every process is inside a call on the dead route
            signalled_at = time.monotonic()
            for process in (pool, scheduler.process, web.process):
                process.send_signal(signal.SIGTERM)
            codes = _exits({"pool": pool, "scheduler": scheduler.process, "web": web.process}, signalled_at)
            left = gone_within(family, 5)
        finally:
            end_process_group(pool)
            scheduler.stop()
            web.stop()
    record_metrics(
        "net 9 SIGTERM pool, scheduler, web on a black-holed redis",
        **{f"{name}_exit": code for name, (code, _s) in codes.items()},
        **{f"{name}_stop_s": round(seconds, 1) for name, (_code, seconds) in codes.items()},
        processes_left=len(left),
    )
    logs = "\n".join(log_tail(path) for path in (pool_log, tmp_path / "scheduler.log", tmp_path / "web.log"))
    for name, (code, seconds) in codes.items():
        assert code is not None and seconds <= STOP_BOUND, (
            f"{name}: exit {code} after {seconds:.1f} s\n{logs}"
        )
        assert code == 0, f"{name} exited {code}\n{logs}"
    assert left == [], f"left behind: {left}"


def test_one_sigterm_ends_a_busy_worker_whose_redis_is_down(
    tmp_path: Path, postgres_url: str, postgres_server, tiny_model_dir: Path, record_metrics
) -> None:
    """What the issue saw twice: a worker stopped while Redis is away waited for it for good."""
    server = RedisServer(tmp_path / "redis-down", appendonly=True)
    server.start()
    upgrade(postgres_url)
    run = FaultRun(postgres_url, server.url, tiny_model_dir, tmp_path, postgres_server)
    try:
        ids = run.add_contents(post_texts(600, seed=71))
        worker = run.start_worker()
        assert worker.pid is not None and worker.process is not None
        family = children_of(worker.pid)
        with run.writes_held():
            run.enqueue(ids)
            run.wait(lambda: run.blocked_writers() >= 1, 60, "the worker mid-batch")
            time.sleep(1.5)  # the append-only file's fsync (every second) has the batch's start
            psutil.Process(server.pid).kill()  # Redis dies; the batch's write goes on, then needs Redis
        run.wait(lambda: "Redis is unreachable" in worker.log(), 60, "the worker to meet the dead Redis")
        worker.signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        code, stop_s = _exit_within(worker.process, signalled_at)
        left = gone_within(family, 5)
        server.start()  # Redis returns (from its append-only file); a new worker recovers the batch
        run.start_worker()
        run.wait_settled(len(ids), 150, "a new worker to finish every post")
        result = run.account()
    finally:
        for each in run.workers:
            if each.running:
                each.stop(timeout=15)
            run.kill_group(each)
        server.stop()
    record_metrics(
        "net 10 SIGTERM, busy worker, redis down",
        exit_code=code,
        stop_s=round(stop_s, 1),
        children_left=len(left),
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
    )
    assert code == 0 and stop_s <= STOP_BOUND, f"exit {code} after {stop_s:.1f} s\n{worker.log()[-4000:]}"
    assert "jobs left started" in worker.log(), worker.log()[-3000:]
    assert "Traceback" not in worker.log(), worker.log()[-3000:]  # its pubsub thread ends quietly too
    assert left == [], left
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result


def test_a_sigterm_while_web_starts_on_a_black_holed_redis_is_a_clean_exit(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The web process listens before it asks Redis whether it answers, and on a cut route that question
    waits a socket timeout: a stop in between must be handled (it was the default action: exit -15)."""
    with BlackHoleProxy(("127.0.0.1", int(redis_server.port or 0))) as proxy:
        proxy.pause()
        web = WebProcess(
            web_environment(
                tmp_path / "var", redis_through(proxy), RQ_DASHBOARD_USERNAME="u", RQ_DASHBOARD_PASSWORD="p"
            ),
            tmp_path / "web.log",
        )
        try:
            web.start()  # listening; asking the cut Redis now
            assert web.process is not None and "serving on" not in web.log(), web.log()
            signalled_at = time.monotonic()
            web.process.send_signal(signal.SIGTERM)
            code, seconds = _exit_within(web.process, signalled_at)
        finally:
            web.stop()
    assert code == 0 and seconds <= STOP_BOUND, f"exit {code} after {seconds:.1f} s\n{web.log()}"
    assert "Traceback" not in web.log(), web.log()
