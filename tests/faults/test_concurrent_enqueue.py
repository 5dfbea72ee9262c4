"""Scenario 4: 50 enqueuer processes enqueue the same ids at the same moment, then two sweeps
(``python scheduler.py --once``) run at once: exactly one job per id, and one row per content.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import time

import pytest
from redis import Redis

from db.session import engine_for
from jobs.queue import classification_queue, enqueue_ids
from tests.faults.accounting import live_job_counts
from tests.faults.conftest import FaultRun, post_texts

pytestmark = [pytest.mark.faults, pytest.mark.integration]

ENQUEUERS = 50
#: contents enqueued by the 50 processes, and contents added for the two sweeps.
FIRST, SECOND = 200, 200


def enqueuer(redis_url: str, database_url: str, ids: list[int], barrier, results) -> None:
    """One enqueuer process: connect, wait for the others, enqueue every id, report how many it added."""
    # Forked: the parent's pooled database connections are not this process's to use.
    engine_for(database_url).dispose(close=False)
    connection = Redis.from_url(redis_url)
    barrier.wait(timeout=60)
    report = enqueue_ids(connection, database_url, ids)
    results.put((len(report.enqueued), len(report.already_pending)))


#: ``python scheduler.py --once``, its imports done first, started at the epoch second in argv[1] (process
#: start-up alone takes longer than a sweep of a few hundred ids: without this, two sweeps started
#: together would run one after the other). It prints when its sweep began and ended on stderr.
SWEEP_AT = """
import runpy, sys, time, scheduler
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
sys.argv = ["scheduler.py", "--once"]
began = time.time()
try:
    runpy.run_module("scheduler", run_name="__main__")
finally:
    print("sweep-interval", began, time.time(), file=sys.stderr)
"""


def sweep_interval(stderr: str) -> tuple[float, float]:
    match = re.search(r"sweep-interval ([\d.]+) ([\d.]+)", stderr)
    assert match, stderr
    return float(match[1]), float(match[2])


def sweep_counts(output: str) -> tuple[int, int]:
    match = re.search(r"enqueued (\d+), already waiting or running (\d+)", output)
    assert match, output
    return int(match[1]), int(match[2])


def test_concurrent_enqueuers_and_sweeps_make_one_job_per_id(fault_run: FaultRun, record_metrics) -> None:
    first = fault_run.add_contents(post_texts(FIRST, seed=4))
    context = multiprocessing.get_context("fork")  # no torch work in the children: redis only
    barrier = context.Barrier(ENQUEUERS)
    results = context.Queue()
    processes = [
        # Each process walks the ids from a different starting point, so that they collide everywhere.
        context.Process(
            target=enqueuer,
            args=(fault_run.redis_url, fault_run.database_url, first[i:] + first[:i], barrier, results),
        )
        for i in range(0, FIRST, FIRST // ENQUEUERS)
    ][:ENQUEUERS]
    started = time.monotonic()
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    enqueue_time = time.monotonic() - started
    connection = fault_run.redis()
    live = live_job_counts(connection)
    assert sum(enqueued for enqueued, _ in reports) == FIRST, reports
    assert sum(pending for _, pending in reports) == FIRST * (ENQUEUERS - 1), reports
    assert len(live) == FIRST and set(live.values()) == {1}, live.most_common(3)

    # Two sweeps at once: the first ids are pending already, the new ones must be enqueued once.
    fault_run.add_contents(post_texts(SECOND, seed=5))
    env = {**os.environ, "REDIS_URL": fault_run.redis_url, "DATABASE_URL": fault_run.database_url}
    start_at = str(time.time() + 5)
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEP_AT, start_at],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [sweep.communicate(timeout=120) for sweep in sweeps]
    assert all(sweep.returncode == 0 for sweep in sweeps), outputs
    counts = [sweep_counts(out.decode()) for out, _err in outputs]
    (began_1, ended_1), (began_2, ended_2) = (sweep_interval(err.decode()) for _out, err in outputs)
    overlap = min(ended_1, ended_2) - max(began_1, began_2)
    live = live_job_counts(connection)
    assert sum(enqueued for enqueued, _ in counts) == SECOND, counts
    assert len(live) == FIRST + SECOND and set(live.values()) == {1}, live.most_common(3)
    in_queue = connection.llen(classification_queue(connection).key)
    connection.close()

    # One worker in burst mode drains the queue: one row per content.
    worker = fault_run.start_worker(args=["--burst"])
    fault_run.wait(lambda: not worker.running, 120, "the burst worker to drain the queue")
    result = fault_run.account()
    record_metrics(
        "4 concurrent enqueuers + 2 sweeps",
        contents=FIRST + SECOND,
        faults=f"{ENQUEUERS} processes enqueue the same {FIRST} ids at once (barrier); then 2 "
        f"`scheduler.py --once` at once over {SECOND} new contents",
        enqueue_s=round(enqueue_time, 1),
        enqueued_by_processes=sum(enqueued for enqueued, _ in reports),
        enqueued_by_sweeps=[enqueued for enqueued, _ in counts],
        sweeps_overlap_s=round(overlap, 3),
        jobs_in_queue=in_queue,
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
    )
    assert in_queue == FIRST + SECOND
    assert overlap > 0, f"the two sweeps did not run at the same time: {outputs}"
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result
    assert result.classified == FIRST + SECOND and not result.failed, result
