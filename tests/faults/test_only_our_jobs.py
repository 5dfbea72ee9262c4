"""Scenario: only our jobs run. Anyone who can write to the Redis a worker reads tries to make it run code.

Each attack is pushed onto the classification queue of a real ``rq worker -w workers.FinbertWorker``
(tiny model, PostgreSQL, real redis-server): a job naming ``os.system`` (JSON, and RQ's default
pickle), one naming ``subprocess.getoutput``, a ``classify_content`` job whose pickled argument runs
``os.system`` when unpickled, and a job of another function squatting a content's job id. For each:
the marker file the attack would create never appears; the job ends in the failed registry with a
one-line ``refused: ...`` reason naming the function (or saying the payload is not JSON); the worker
logs a warning and keeps working: the real content is classified exactly once. A control run shows
that a plain RQ worker does run such a job (so the marker would tell).
"""

from __future__ import annotations

import json
import os
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from db.models import Classification
from db.session import session_scope
from jobs.queue import JOB_FUNCTION, QUEUE_NAME, enqueue_ids, job_id_for
from jobs.registry import refusal
from tests.faults.conftest import FaultRun
from tests.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: the worker's log lines carry their level, so that a warning can be told from other lines.
LOG_LEVEL_FORMAT = ["--log-format", "%(levelname)s %(message)s"]
#: seconds for a worker to refuse or run a job.
JOB_END_TIMEOUT = 60.0
NOT_OURS = "is not a job of this project"
NOT_JSON = "refused: its payload is not JSON of an RQ job (jobs of this project are JSON, never pickle)"


class RunsCommandWhenUnpickled:
    """An argument whose unpickling runs a shell command (``pickle`` calls what ``__reduce__`` names)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


def _json_queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def push_os_system_json(run: FaultRun, connection: Redis, marker: Path, content_id: int) -> tuple[str, str]:
    job = _json_queue(connection).enqueue("os.system", f"touch {marker}")
    return job.id, f"refused: function 'os.system' {NOT_OURS}"


def push_os_system_pickle(run: FaultRun, connection: Redis, marker: Path, content_id: int) -> tuple[str, str]:
    job = Queue(QUEUE_NAME, connection=connection).enqueue(
        "os.system", f"touch {marker}"
    )  # RQ's default: pickle
    return job.id, NOT_JSON


def push_subprocess_json(run: FaultRun, connection: Redis, marker: Path, content_id: int) -> tuple[str, str]:
    job = _json_queue(connection).enqueue("subprocess.getoutput", f"touch {marker}")
    return job.id, f"refused: function 'subprocess.getoutput' {NOT_OURS}"


def push_pickled_argument(run: FaultRun, connection: Redis, marker: Path, content_id: int) -> tuple[str, str]:
    """A job for our own function, its data replaced by a hand-made pickle whose argument runs a command."""
    queue = _json_queue(connection)
    job = queue.create_job(JOB_FUNCTION, args=(content_id, run.ident))
    # The payload goes in before the job reaches the queue: a worker waiting on the queue would
    # otherwise take the job (and its JSON payload) between the enqueue and the replacement.
    job._data = pickle.dumps(
        (JOB_FUNCTION, None, (RunsCommandWhenUnpickled(f"touch {marker}"), run.ident), {})
    )
    queue.enqueue_job(job)
    assert zlib.decompress(connection.hget(job.key, "data")).startswith(
        b"\x80"
    )  # a pickle (compressed, as RQ stores it)
    return job.id, NOT_JSON


def push_squatter(run: FaultRun, connection: Redis, marker: Path, content_id: int) -> tuple[str, str]:
    """A job of another function under the id the real enqueue will want for ``content_id``."""
    job = _json_queue(connection).enqueue(
        "os.system", f"touch {marker}", job_id=job_id_for(content_id, run.ident)
    )
    return job.id, f"refused: function 'os.system' {NOT_OURS}"


ATTACKS = {
    "os.system-json": push_os_system_json,
    "os.system-pickle": push_os_system_pickle,
    "subprocess.getoutput-json": push_subprocess_json,
    "pickled-argument": push_pickled_argument,
    "squatted-job-id": push_squatter,
}


def classifications(run: FaultRun, content_id: int) -> int:
    with session_scope(run.database_url) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Classification)
                .where(Classification.content_id == content_id)
            )
            or 0
        )


def wait_job(connection: Redis, job_id: str, status: str) -> Job:
    def reached() -> bool:
        return (
            Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status().value == status
        )

    wait_for(reached, JOB_END_TIMEOUT, what=f"job {job_id} to be {status}")
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


def assert_refused(connection: Redis, worker: WorkerProcess, job_id: str, reason: str) -> None:
    """Failed at once, unrun, with ``reason`` as its one-line failure, logged as a warning."""
    job = wait_job(connection, job_id, "failed")
    result = job.latest_result()
    assert result is not None and result.exc_string == reason
    assert "\n" not in result.exc_string
    assert job_id in _json_queue(connection).failed_job_registry.get_job_ids()
    assert job.retries_left in (None, 0)  # never retried
    logged = f"refused job {job_id}: {reason.removeprefix('refused: ')}"
    wait_for(lambda: logged in worker.log(), 10, what=f"{logged!r} in the log")
    (line,) = [line for line in worker.log().splitlines() if f"refused job {job_id}:" in line]
    assert line.startswith("WARNING "), line


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_job_never_runs(fault_run: FaultRun, tmp_path: Path, attack: str) -> None:
    connection = fault_run.redis()
    marker = tmp_path / f"{attack}-ran"
    (content_id,) = fault_run.add_contents(["Stocks rally on strong earnings"])
    worker = fault_run.start_worker(args=LOG_LEVEL_FORMAT)

    job_id, reason = ATTACKS[attack](fault_run, connection, marker, content_id)
    if attack != "squatted-job-id":
        real = enqueue_ids(connection, fault_run.database_url, [content_id])
        assert real.enqueued == [content_id]
    assert_refused(connection, worker, job_id, reason)
    if attack == "squatted-job-id":
        # The enqueuer replaces a refused job (not ours) at once: the content is not kept waiting a day.
        real = enqueue_ids(connection, fault_run.database_url, [content_id])
        assert (real.enqueued, real.retried_after_failure) == ([content_id], [content_id])

    wait_job(connection, real.job_ids[0], "finished")
    assert classifications(fault_run, content_id) == 1
    assert not marker.exists(), f"the {attack} job ran"
    assert worker.running, worker.log()[-3000:]
    assert "found an unhandled exception" not in worker.log()
    connection.close()


BAD_CONTENT_IDS = [0, -1, "1", True, 1.5]


@pytest.mark.parametrize("content_id", BAD_CONTENT_IDS, ids=repr)
def test_a_content_id_that_is_not_a_positive_whole_number_is_refused(content_id: object) -> None:
    job = Job.create(
        JOB_FUNCTION, args=[content_id, "0123456789"], connection=Redis(), serializer=JSONSerializer
    )
    reason = refusal(job)
    assert reason == f"{JOB_FUNCTION}: content id {content_id!r} is not a whole number >= 1"


def test_a_worker_refuses_bad_content_ids(fault_run: FaultRun) -> None:
    connection = fault_run.redis()
    worker = fault_run.start_worker(args=LOG_LEVEL_FORMAT)
    queue = _json_queue(connection)
    jobs = {
        repr(content_id): queue.enqueue(JOB_FUNCTION, content_id, fault_run.ident)
        for content_id in BAD_CONTENT_IDS
    }
    (good,) = fault_run.add_contents(["Shares fall after weak guidance"])
    real = enqueue_ids(connection, fault_run.database_url, [good])
    for shown, job in jobs.items():
        assert_refused(
            connection,
            worker,
            job.id,
            f"refused: {JOB_FUNCTION}: content id {shown} is not a whole number >= 1",
        )
    wait_job(connection, real.job_ids[0], "finished")
    assert classifications(fault_run, good) == 1
    assert worker.running
    connection.close()


def test_control_a_plain_rq_worker_runs_the_attack(fault_run: FaultRun, tmp_path: Path) -> None:
    """Without the project's worker, the same push runs the command: the marker is a true witness."""
    connection = fault_run.redis()
    marker = tmp_path / "plain-worker-ran"
    job_id, _ = push_os_system_json(fault_run, connection, marker, 0)
    plain = WorkerProcess(
        fault_run.redis_url,
        fault_run.database_url,
        fault_run.model_dir,
        tmp_path / "plain-worker.log",
        args=["--serializer", "json", "--burst"],
        worker_class="rq.worker.SimpleWorker",
    )
    plain.start(wait_ready=False)
    try:
        # Not its exit: a plain RQ 3.0 worker can wait out its pubsub thread's 60 s sleep on the way
        # out (the race jobs.rq_seam.unsubscribe_bounded closes for ours).
        wait_job(connection, job_id, "finished")
        assert marker.exists(), plain.log()
    finally:
        plain.kill()
    connection.close()


def _job_with_payload(payload: object) -> Job:
    """A job whose stored data is ``payload`` as JSON (what anyone with Redis access can write)."""
    job = Job(connection=Redis(), serializer=JSONSerializer)
    job.data = json.dumps(payload).encode()
    return job


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([JOB_FUNCTION, None, "12", {}], "its payload is not JSON of an RQ job"),
        ([JOB_FUNCTION, None, [1, "0123456789"], []], "its payload is not JSON of an RQ job"),
        ([JOB_FUNCTION, "an object", [1, "0123456789"], {}], "call functions, not methods of an object"),
        ([JOB_FUNCTION, None, [2**31, "0123456789"], {}], "content id 2147483648 is beyond any content's"),
        ([JOB_FUNCTION, None, [1, "0123456789"], {"extra": 1}], "takes exactly [content_id, database_id]"),
        (["builtins.eval", None, ["1"], {}], "function 'builtins.eval' is not a job of this project"),
        ({"not": "a job"}, "its payload is not JSON of an RQ job"),
    ],
)
def test_a_payload_not_of_the_expected_shape_is_refused(payload: object, reason: str) -> None:
    refused = refusal(_job_with_payload(payload))
    assert refused is not None and reason in refused and "\n" not in refused


def test_a_payload_of_the_expected_shape_is_accepted() -> None:
    assert refusal(_job_with_payload([JOB_FUNCTION, None, [1, "0123456789"], {}])) is None
