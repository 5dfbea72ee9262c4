"""Scenario 1: ``kill -9`` of a worker in the middle of a batch; another worker recovers its jobs.

The worker and its scheduler process are killed together (their process group: a crashed host or
container). The batch's jobs stay STARTED; RQ's maintenance in the new worker finds their executions'
heartbeats expired (job timeout 20 s + 10 s), retries them (first retry interval 5 s), and the
scheduler moves them back to the queue. Expected: about 30-45 s from the kill to the last row.
"""

from __future__ import annotations

import time

import pytest

from jobs.queue import JOB_TIMEOUT, RETRY_INTERVALS, classification_queue
from tests.faults.conftest import FULL_BATCHES, FaultRun, post_texts
from workers.worker import BATCH_SECONDS_PER_JOB, HEARTBEAT_MARGIN, MAINTENANCE_INTERVAL

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTENTS = 320
#: jobs in the batch the kill abandons (WORKER_BATCH_JOBS of the suite).
BATCH = 32
#: seconds from the kill to the last stored row that the settings allow: the batch's heartbeats expire
#: (its time limit, which grows with the batch, + margin), maintenance runs (interval), the retry
#: waits (first interval), plus slack for a loaded 2-core machine.
RECOVERY_BOUND = (
    JOB_TIMEOUT
    + BATCH_SECONDS_PER_JOB * BATCH
    + HEARTBEAT_MARGIN
    + MAINTENANCE_INTERVAL
    + RETRY_INTERVALS[0]
    + 10
)


def test_kill_9_mid_batch_jobs_are_recovered_once(fault_run: FaultRun, record_metrics) -> None:
    ids = fault_run.add_contents(post_texts(CONTENTS))
    first = fault_run.start_worker(env=FULL_BATCHES)
    fault_run.enqueue(ids[: CONTENTS // 3])
    fault_run.wait(lambda: fault_run.classified() == CONTENTS // 3, 60, "the first third classified")
    connection = fault_run.redis()
    started_key = classification_queue(connection).started_job_registry.key

    with fault_run.writes_held():  # the next batch is caught at its write, then killed
        fault_run.enqueue(ids[CONTENTS // 3 :])
        fault_run.wait(lambda: fault_run.blocked_writers() > 0, 60, "the worker to be mid-batch")
        fault_run.kill_group(first)
        killed_at = time.time()
    abandoned = {member.decode() for member in connection.zrange(started_key, 0, -1)}
    classified_at_kill = fault_run.classified()
    assert len(abandoned) == BATCH, "the kill must leave a full batch of started jobs behind"

    fault_run.start_worker()
    detected: list[float] = []

    def recovered() -> bool:
        if not detected and not abandoned & {m.decode() for m in connection.zrange(started_key, 0, -1)}:
            detected.append(time.time() - killed_at)
        return fault_run.classified() >= CONTENTS

    fault_run.wait(recovered, RECOVERY_BOUND + 90, "every content to be classified after the kill")
    fault_run.wait_settled(CONTENTS, 30)
    recovery = fault_run.last_stored() - killed_at
    result = fault_run.account()
    connection.close()
    record_metrics(
        "1 kill -9 mid-batch",
        contents=CONTENTS,
        faults=f"SIGKILL of a worker and its scheduler process, {len(abandoned)} jobs started "
        f"({classified_at_kill} classified at the kill)",
        jobs_retried=fault_run.retried_jobs(ids),
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
        abandoned_detected_after_s=round(detected[0], 1) if detected else None,
        recovery_s=round(recovery, 1),
    )
    assert result.lost == [] and result.doubled == [], result
    assert result.classified == CONTENTS and not result.failed, result
    assert result.stranded == [], f"jobs left in the intermediate queue: {result}"
    assert recovery <= RECOVERY_BOUND, f"recovery took {recovery:.1f}s\n{fault_run.logs()}"
