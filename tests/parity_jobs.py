"""Job functions for the worker parity tests: registered only by tests/parity_worker.py, never by the project.

Each one leaves its trace in Redis (a key under ``parity:``), so a test can tell what ran, how often,
and hold a job in the middle of its run (``wait_for_release``) while it sends the worker a command.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from redis import Redis
from rq import get_current_job
from rq.job import Job

from jobs.registry import ArgumentCheck

#: Redis key prefix of every trace these jobs leave.
PREFIX = "parity:"
#: seconds a held job waits for its release before giving up (a test that forgot it fails, not hangs).
RELEASE_TIMEOUT = 60.0
#: seconds between two looks at the release key.
RELEASE_POLL = 0.02


class ParityFailure(Exception):
    """The failure the failing test jobs raise."""


def running_key(name: str) -> str:
    return f"{PREFIX}running:{name}"


def release_key(name: str) -> str:
    return f"{PREFIX}release:{name}"


def runs_key(name: str) -> str:
    return f"{PREFIX}runs:{name}"


def callback_key(job_id: str) -> str:
    return f"{PREFIX}callback:{job_id}"


def _connection() -> Redis:
    job = get_current_job()
    assert job is not None, "a parity job runs inside an RQ worker"
    return job.connection


def succeed(value: int) -> dict[str, int]:
    """Return a result that depends on the argument (a job of another function than classification)."""
    _connection().incr(runs_key(f"succeed-{value}"))
    return {"value": value, "double": 2 * value}


def fail(message: str) -> None:
    """Raise ParityFailure (every attempt)."""
    _connection().incr(runs_key(f"fail-{message}"))
    raise ParityFailure(message)


def sleep_for(seconds: float) -> float:
    """Sleep (for job timeouts): returns the seconds slept when nothing stopped it."""
    time.sleep(seconds)
    return seconds


def wait_for_release(name: str, then: str = "return") -> str:
    """Say it runs, wait until the test releases it, then return (``then="return"``) or raise."""
    connection = _connection()
    connection.set(running_key(name), "1")
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while not connection.exists(release_key(name)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name} was never released")
        time.sleep(RELEASE_POLL)
    if then == "raise":
        raise ParityFailure(f"{name} released to fail")
    return f"{name} released"


def load_model() -> str:
    """Load the process's warm classifier (a plain RQ worker loads it lazily, in its first job)."""
    from model.warm import warm_classifier

    return warm_classifier().model_version


def record_success(job: Job, connection: Redis, result: object, *args: object, **kwargs: object) -> None:
    """on_success callback: note that it ran, and with which result."""
    connection.set(callback_key(job.id), f"success: {result!r}")


def record_failure(job: Job, connection: Redis, exc_type: type, exc_value: BaseException, traceback) -> None:
    """on_failure callback: note that it ran, and for which exception."""
    connection.set(callback_key(job.id), f"failure: {exc_type.__name__}: {exc_value}")


def _any_arguments(args: list, kwargs: dict) -> str | None:
    return None


#: function name -> argument check (jobs.registry's shape) for ParityFinbertWorker.
REGISTERED: Mapping[str, ArgumentCheck] = {
    f"{__name__}.{function.__name__}": _any_arguments
    for function in (succeed, fail, sleep_for, wait_for_release, load_model, record_success, record_failure)
}
