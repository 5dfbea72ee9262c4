"""Scenario 2: Redis (append-only) restarted in the middle of a run.

The workers lose their connections, reconnect and carry on; whatever the restart dropped is picked
up by the sweep (``python scheduler.py --once``). End state: every content classified once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from services.redis_server import RedisServer
from tests.faults.conftest import FaultRun, post_texts

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTENTS = 300
SMALL_BATCHES = {"FINBERT_BATCH_SIZE": "4", "WORKER_BATCH_JOBS": "4"}


def run_sweep(run: FaultRun) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": run.redis_url, "DATABASE_URL": run.database_url}
    return subprocess.run(
        [sys.executable, "scheduler.py", "--once"], env=env, capture_output=True, text=True, timeout=60
    )


def test_redis_restart_mid_run_workers_carry_on(
    aof_redis: RedisServer, fault_run: FaultRun, record_metrics
) -> None:
    fault_run.redis_url = aof_redis.url
    ids = fault_run.add_contents(post_texts(CONTENTS, seed=2))
    # Small batches: more Redis round trips per content, so the restart meets commands in flight.
    workers = [fault_run.start_worker(env=SMALL_BATCHES) for _ in range(2)]
    fault_run.enqueue(ids)
    fault_run.wait(lambda: fault_run.classified() >= CONTENTS // 3, 60, "a third classified", interval=0.005)
    restarted_at = time.time()
    aof_redis.restart()
    back_at = time.time()
    classified_at_restart = fault_run.classified()
    assert classified_at_restart < CONTENTS, "the restart came after the run: nothing was tested"

    fault_run.wait_settled(0, 120, "the workers to go quiet")
    before_sweep = fault_run.account()
    sweep = run_sweep(fault_run)
    assert sweep.returncode == 0, sweep.stderr
    fault_run.wait_settled(CONTENTS, 120, "every content classified after the sweep")
    result = fault_run.account()
    alive = sum(worker.running for worker in workers)
    record_metrics(
        "2 redis restart",
        contents=CONTENTS,
        faults=f"redis-server (appendonly yes) restarted under 2 busy workers ({classified_at_restart} "
        "classified), then a sweep",
        restart_s=round(back_at - restarted_at, 2),
        workers_alive_after=alive,
        left_for_sweep=len(before_sweep.lost) + len(before_sweep.failed),
        sweep=sweep.stdout.strip(),
        jobs_retried=fault_run.retried_jobs(ids),
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
        recovery_s=round(fault_run.last_stored() - back_at, 1),
    )
    assert alive == len(workers), f"a worker exited on the restart\n{fault_run.logs()}"
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result
    assert result.classified == CONTENTS and not result.failed, result
