"""Scenario 5: SIGTERM to a worker in the middle of a batch (warm shutdown).

Every job of the batch ends finished or back at the front of the queue: none left STARTED, none lost,
none stranded in the intermediate list; a new worker finishes them all. The batch holds classification
jobs (finished in bulk) and two other jobs that would run alone after them: those are handed back.
(Those two were ``time.sleep`` jobs before the allow-list of jobs a worker runs; now they are the
project's own other job, the sweep, which a worker runs alone through RQ's path.)
"""

from __future__ import annotations

import signal
import time

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from jobs.queue import classification_queue
from jobs.registry import SWEEP_FUNCTION
from tests.faults.conftest import FULL_BATCHES, FaultRun, post_texts

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTENTS = 300
#: jobs of the batch that run alone (after its classifications): two sweeps of this database.
NAPS = ["sweep-probe-1", "sweep-probe-2"]
#: seconds a worker may take to end its batch and hand back the rest after SIGTERM.
STOP_TIMEOUT = 30


def test_sigterm_mid_batch_finishes_or_hands_back_every_job(fault_run: FaultRun, record_metrics) -> None:
    ids = fault_run.add_contents(post_texts(CONTENTS, seed=6))
    third = CONTENTS // 3
    worker = fault_run.start_worker(env=FULL_BATCHES)
    fault_run.enqueue(ids[:third])
    fault_run.wait(lambda: fault_run.classified() == third, 60, "the first third classified")
    connection = fault_run.redis()
    queue = classification_queue(connection)

    with fault_run.writes_held():  # the batch is caught at its write, then SIGTERM
        # 30 classifications, then the two jobs that run alone after them (a sweep taken first would
        # run at once, alone, and enqueue the rest itself), then the rest.
        fault_run.enqueue(ids[third : third + 30])
        for nap in NAPS:
            queue.enqueue(SWEEP_FUNCTION, job_id=nap)
        fault_run.enqueue(ids[third + 30 :])
        fault_run.wait(lambda: fault_run.blocked_writers() > 0, 60, "the worker to be mid-batch")
        batch = [
            job_id
            for job_id, _execution in queue.started_job_registry.get_job_and_execution_ids(cleanup=False)
        ]
        worker.signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        time.sleep(0.5)  # the fault's shape: the batch stays blocked a while after the signal
        assert worker.running, "a warm shutdown must wait for the batch"
    assert worker.process is not None
    exit_code = worker.process.wait(STOP_TIMEOUT)
    stop_time = time.monotonic() - signalled_at

    statuses = {
        job_id: Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status()
        for job_id in batch
    }
    finished = [job_id for job_id, status in statuses.items() if status == JobStatus.FINISHED]
    handed_back = [job_id for job_id, status in statuses.items() if status == JobStatus.QUEUED]
    front = [member.decode() for member in connection.lrange(queue.key, 0, len(handed_back) - 1)]
    started_left = connection.zcard(queue.started_job_registry.key)
    stranded_now = connection.llen(queue.intermediate_queue_key)

    fault_run.start_worker()
    fault_run.wait_settled(CONTENTS, 120, "a new worker to finish every job")
    naps_finished = all(
        Job.fetch(nap, connection=connection, serializer=JSONSerializer).get_status() == JobStatus.FINISHED
        for nap in NAPS
    )
    connection.close()
    result = fault_run.account()
    record_metrics(
        "5 SIGTERM mid-batch",
        contents=CONTENTS,
        faults=f"SIGTERM while a batch of {len(batch)} jobs was mid-write",
        exit_code=exit_code,
        stop_s=round(stop_time, 1),
        batch_finished=len(finished),
        batch_handed_back=len(handed_back),
        started_left=started_left,
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=stranded_now + len(result.stranded),
    )
    assert exit_code == 0, worker.log()[-3000:]
    assert len(batch) == 32 and set(NAPS) <= set(batch), batch
    assert len(finished) + len(handed_back) == len(batch), statuses
    assert sorted(handed_back) == NAPS and sorted(front) == NAPS, (handed_back, front)
    assert started_left == 0 and stranded_now == 0
    assert naps_finished
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result
    assert result.classified == CONTENTS and not result.failed, result


def test_sigterm_while_a_batch_fills_loses_nothing(fault_run: FaultRun, record_metrics) -> None:
    """SIGTERM while the worker holds a job and waits for more to fill its batch (FINBERT_BATCH_WAIT_MS)."""
    ids = fault_run.add_contents(post_texts(3, seed=9))
    worker = fault_run.start_worker(env={"FINBERT_BATCH_WAIT_MS": "3000"})
    connection = fault_run.redis()
    queue = classification_queue(connection)
    fault_run.enqueue(ids)
    # Taken from the queue (so in the worker's hands), not started yet: the batch is still filling.
    fault_run.wait(
        lambda: connection.llen(queue.key) == 0 and connection.llen(queue.intermediate_queue_key) == len(ids),
        30,
        "the worker to take the jobs",
        interval=0.01,
    )
    worker.signal(signal.SIGTERM)
    assert worker.process is not None
    exit_code = worker.process.wait(STOP_TIMEOUT)
    result = fault_run.account()
    connection.close()
    record_metrics(
        "5b SIGTERM while a batch fills",
        contents=len(ids),
        exit_code=exit_code,
        classified=result.classified,
        lost=len(result.lost),
        stranded=len(result.stranded),
    )
    assert exit_code == 0, worker.log()[-3000:]
    assert result.lost == [] and result.stranded == [] and result.doubled == [], result
