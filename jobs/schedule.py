"""What the scheduler keeps in Redis: the hourly sweep's registration, and a sweep after Redis lost its data.

``keep_schedule`` runs on every pass of ``python scheduler.py``, so a Redis restarted without
persistence, or emptied by FLUSHALL, has both back within one pass:

- The hourly sweep is registered with rq-scheduler under a fixed id. A registration that is there
  and current is left alone (due time included); a missing or different one is written again, under
  the same id: never two.
- The scheduler keeps a marker key (no expiry) in Redis. A pass that finds it missing knows Redis is
  new or lost its data, and with it the jobs of posts not yet classified: it enqueues one sweep now
  (a fixed job id, ``unique=True``, so schedulers that notice together enqueue it once), then
  writes the marker.

Ids and the marker carry the queue's name unless it is the default queue, so deployments sharing
one Redis under different ``VOLFEFE_QUEUE`` names keep theirs apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Retry
from rq.exceptions import DuplicateJobError

from config import DEFAULT_QUEUE_NAME
from jobs.json_scheduler import JsonJob, JsonScheduler
from jobs.registry import SWEEP_FUNCTION, check_no_arguments

logger = logging.getLogger(__name__)

SWEEP_JOB_ID = "hourly-sweep"
SWEEP_CRON = "0 * * * *"
#: id of the one-off sweep enqueued when Redis is found without the scheduler's marker.
CATCH_UP_JOB_ID = "sweep-after-redis-loss"
#: key the scheduler keeps in Redis (no expiry); missing means Redis is new or lost its data.
ALIVE_MARKER = "volfefe:scheduler:alive"
#: seconds one sweep may run (enqueueing runs at thousands of jobs a second).
SWEEP_TIMEOUT = 10 * 60
#: seconds a finished or failed catch-up sweep is kept, for status and the dashboard.
CATCH_UP_KEEP = 60 * 60
#: seconds before the catch-up sweep's second and third attempts (the database may be down too).
CATCH_UP_RETRY_INTERVALS = [30, 120]


def _for_queue(name: str, queue_name: str, separator: str) -> str:
    return name if queue_name == DEFAULT_QUEUE_NAME else f"{name}{separator}{queue_name}"


def sweep_job_id(queue_name: str) -> str:
    """The hourly sweep's job id: ``hourly-sweep`` (``hourly-sweep-<queue>`` for another queue)."""
    return _for_queue(SWEEP_JOB_ID, queue_name, "-")


def catch_up_job_id(queue_name: str) -> str:
    """The catch-up sweep's job id: ``sweep-after-redis-loss`` (with ``-<queue>`` for another queue)."""
    return _for_queue(CATCH_UP_JOB_ID, queue_name, "-")


def alive_marker(queue_name: str) -> str:
    """The marker key: ``volfefe:scheduler:alive`` (with ``:<queue>`` for another queue)."""
    return _for_queue(ALIVE_MARKER, queue_name, ":")


def sweep_scheduler(connection: Redis, queue_name: str, interval: float) -> JsonScheduler:
    """The scheduler of ``queue_name``'s hourly sweep: JSON jobs, and no job but the sweep (no arguments)."""
    return JsonScheduler(queue_name, connection, interval, registered={SWEEP_FUNCTION: check_no_arguments})


def sweep_registration_is_current(scheduler: JsonScheduler) -> bool:
    """True when the hourly sweep is on the schedule with its job: JSON, our function, cron and queue."""
    job_id = sweep_job_id(scheduler.queue_name)
    if job_id not in scheduler:
        return False
    try:
        job = scheduler.job_class.fetch(job_id, connection=scheduler.connection)
        return (
            job.func_name == SWEEP_FUNCTION
            and not job.args
            and not job.kwargs
            and job.origin == scheduler.queue_name
            and job.meta.get("cron_string") == SWEEP_CRON
            and job.timeout == SWEEP_TIMEOUT
        )
    except RedisError:
        raise
    except Exception:  # no hash, or data that is not JSON (a registration from before JSON jobs)
        return False


def ensure_sweep_registered(scheduler: JsonScheduler) -> bool:
    """Register the hourly sweep unless its registration is current; True when it was (re)written.

    The fixed id makes this idempotent: a rewrite replaces the job and its place on the schedule.
    """
    if sweep_registration_is_current(scheduler):
        return False
    job_id = sweep_job_id(scheduler.queue_name)
    scheduler.cancel(job_id)
    scheduler.connection.delete(JsonJob.key_for(job_id))  # no field of an older job survives the rewrite
    scheduler.cron(
        SWEEP_CRON,
        func=SWEEP_FUNCTION,
        id=job_id,
        queue_name=scheduler.queue_name,
        timeout=SWEEP_TIMEOUT,
        description="hourly sweep: enqueue every unclassified content",
        use_local_timezone=False,
    )
    return True


def next_sweep_at(scheduler: JsonScheduler) -> datetime | None:
    """When the hourly sweep is due next (UTC), or None when it is not on the schedule."""
    score = scheduler.connection.zscore(scheduler.scheduled_jobs_key, sweep_job_id(scheduler.queue_name))
    return None if score is None else datetime.fromtimestamp(score, UTC)


def enqueue_catch_up_sweep(scheduler: JsonScheduler) -> bool:
    """Enqueue one sweep now on the scheduler's queue; False when one is already there (never two)."""
    try:
        scheduler.queue().enqueue(
            SWEEP_FUNCTION,
            job_id=catch_up_job_id(scheduler.queue_name),
            unique=True,
            job_timeout=SWEEP_TIMEOUT,
            result_ttl=CATCH_UP_KEEP,
            failure_ttl=CATCH_UP_KEEP,
            retry=Retry(max=len(CATCH_UP_RETRY_INTERVALS), interval=CATCH_UP_RETRY_INTERVALS),
            description="sweep after Redis lost its data: enqueue every unclassified content",
        )
    except DuplicateJobError:
        return False
    return True


@dataclass(frozen=True)
class ScheduleCheck:
    """What one ``keep_schedule`` pass found and did."""

    #: the registration was missing or different, and was written.
    sweep_registered: bool
    #: the marker was missing: Redis is new or lost its data.
    marker_missing: bool
    #: a catch-up sweep was enqueued (False: none needed, or one was already there).
    catch_up_enqueued: bool


def keep_schedule(scheduler: JsonScheduler) -> ScheduleCheck:
    """Re-assert the hourly sweep's registration; after a data loss, enqueue a sweep now and mark Redis.

    Run it while holding the scheduler's lock, so that no other scheduler moves the sweep meanwhile.
    """
    registered = ensure_sweep_registered(scheduler)
    if registered:
        logger.info(
            "hourly sweep registered as %r (%s, next run %s)",
            sweep_job_id(scheduler.queue_name),
            SWEEP_CRON,
            _when(next_sweep_at(scheduler)),
        )
    connection = scheduler.connection
    marker = alive_marker(scheduler.queue_name)
    if connection.exists(marker):
        return ScheduleCheck(registered, marker_missing=False, catch_up_enqueued=False)
    enqueued = enqueue_catch_up_sweep(scheduler)
    connection.set(marker, f"{datetime.now(UTC).isoformat(timespec='seconds')} {scheduler.name}")
    logger.warning(
        "Redis holds no %r marker (a new Redis, or one that lost its data): %s %r on queue %r",
        marker,
        "sweep enqueued now as" if enqueued else "a sweep is already waiting as",
        catch_up_job_id(scheduler.queue_name),
        scheduler.queue_name,
    )
    return ScheduleCheck(registered, marker_missing=True, catch_up_enqueued=enqueued)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "not scheduled"
