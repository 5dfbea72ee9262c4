"""Scenario 3: PostgreSQL restarted mid-run, then its connections killed again and again while results
are written (pg_terminate_backend). A batch whose write fails stores its items one by one; an item that
still fails runs alone and, failing again, is retried (5 s, then 30 s later). Each content ends with
exactly one row.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from tests.faults.conftest import FULL_BATCHES, FaultRun, post_texts
from tests.processes import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTENTS = 300
#: seconds during which connections are terminated (at most), and the pause between two rounds.
TERMINATE_FOR = 2.0
TERMINATE_EVERY = 0.05


def classified_or_none(run: FaultRun) -> int | None:
    """``run.classified()``, or None when the look itself met a terminated session."""
    try:
        return run.classified()
    except OperationalError:
        return None


class Terminator(threading.Thread):
    """Ends every session of the database (pg_terminate_backend) every TERMINATE_EVERY seconds."""

    def __init__(self, run: FaultRun) -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.stop = threading.Event()
        self.rounds = 0
        self.terminated = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.terminated += self.run_.postgres.terminate_connections(self.run_.dbname)
            self.rounds += 1
            self.stop.wait(TERMINATE_EVERY)


def test_postgres_restart_and_killed_connections_each_content_one_row(
    fault_run: FaultRun, record_metrics
) -> None:
    ids = fault_run.add_contents(post_texts(CONTENTS, seed=3))
    third = CONTENTS // 3
    for _ in range(2):
        fault_run.start_worker(env=FULL_BATCHES)
    fault_run.enqueue(ids[:third])
    fault_run.wait(lambda: fault_run.classified() == third, 60, "the first third classified")

    # 1. Restart while both workers are in the middle of a batch (caught at their write).
    with fault_run.writes_held():
        fault_run.enqueue(ids[third : 2 * third])
        fault_run.wait(lambda: fault_run.blocked_writers() >= 2, 60, "both workers to be mid-batch")
        restarted_at = time.time()
        fault_run.postgres.restart()
        back_at = time.time()
    fault_run.wait_settled(2 * third, 120, "the second third after the restart")
    after_restart = fault_run.last_stored() - back_at

    # 2. Kill every connection again and again while the last third is written: the first round meets
    # both workers blocked in their write (and ends the session holding the lock).
    terminator = Terminator(fault_run)
    with fault_run.writes_held():
        fault_run.enqueue(ids[2 * third :])
        fault_run.wait(lambda: fault_run.blocked_writers() >= 2, 60, "both workers to be mid-write")
        terminator.start()
        terminated_from = time.time()
        # The fault lasts TERMINATE_FOR seconds, or until every content is stored if that comes first
        # (the terminator ends this test's own sessions too: a look that fails is "not yet").
        with contextlib.suppress(AssertionError):
            wait_for(lambda: classified_or_none(fault_run) == CONTENTS, TERMINATE_FOR, interval=0.05)
        terminator.stop.set()
        terminator.join()
    fault_run.wait_settled(CONTENTS, 120, "every content classified after the terminations")
    after_terminations = fault_run.last_stored() - terminated_from
    result = fault_run.account()
    record_metrics(
        "3 postgres restart + terminated connections",
        contents=CONTENTS,
        faults=f"PostgreSQL restarted ({back_at - restarted_at:.1f}s down) with 2 workers mid-batch; then "
        f"{terminator.terminated} sessions terminated in {terminator.rounds} rounds, the first with 2 workers "
        "mid-write",
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
        jobs_retried=fault_run.retried_jobs(ids),
        recovery_after_restart_s=round(after_restart, 1),
        last_third_stored_after_first_termination_s=round(after_terminations, 1),
    )
    assert terminator.terminated > 0, "no session was terminated: nothing was tested"
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result
    assert result.classified == CONTENTS and not result.failed, f"{result}\n{fault_run.logs()}"
