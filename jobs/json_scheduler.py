"""rq-scheduler narrowed to this project's rules: JSON jobs only, and only our code decides what runs.

Every call below rq-scheduler's surface lives here; each override names the rq-scheduler method it
mirrors, checked against rq-scheduler 0.14 on RQ 3.0. What changes against the library:

- every job it creates, reads or enqueues is a ``JsonJob`` (JSON, never pickle: unpickling data read
  from Redis runs code);
- ``get_queue_for_job`` always returns our queue class (the library imports a class named in the
  job's meta);
- ``enqueue_jobs`` moves only due jobs of this scheduler's queue that ``jobs.registry.refusal``
  accepts for the functions it schedules; any other entry of its queue (unreadable, not JSON,
  another function) is taken off the schedule with a warning, and entries of other queues are left
  to their own scheduler;
- the lock is released only by the scheduler that holds it (the library deletes it unconditionally,
  so a scheduler back from an outage could delete the lock another one took meanwhile);
- ``keep_alive`` refreshes the scheduler's key and registers its birth again when Redis lost it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq_scheduler import Scheduler

from errors import first_line
from jobs.registry import ArgumentCheck, refusal

logger = logging.getLogger(__name__)

#: seconds a scheduler's key and lock outlive its interval (rq-scheduler's own margin).
KEY_TTL_MARGIN = 10

# Deletes the lock only while it still holds this scheduler's name.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class JsonJob(Job):
    """An RQ job always (de)serialized as JSON, whatever serializer a caller passes.

    ``Job.create``, ``Job.fetch`` and ``Job.fetch_many`` all build jobs through ``__init__``, so no
    path of rq-scheduler or RQ can read this class's data, meta or result with pickle.
    """

    def __init__(self, id: str | None = None, connection: Redis | None = None, serializer: object = None):
        super().__init__(id, connection=connection, serializer=JSONSerializer)


class JsonScheduler(Scheduler):
    """rq-scheduler for one queue, with JSON jobs, that moves only the jobs in ``registered``.

    ``registered`` maps the job functions this scheduler schedules to their argument checks
    (``jobs.registry``); a due job of its queue that ``jobs.registry.refusal`` refuses (not JSON,
    another function, a callback, bad arguments) is never enqueued.
    """

    job_class = JsonJob
    queue_class = Queue

    def __init__(
        self, queue_name: str, connection: Redis, interval: float, registered: Mapping[str, ArgumentCheck]
    ):
        super().__init__(
            queue_name=queue_name,
            connection=connection,
            interval=interval,
            job_class=JsonJob,
            queue_class=Queue,
        )
        self.registered = dict(registered)

    @property
    def key_ttl(self) -> int:
        """Seconds the scheduler's key and its lock live without a refresh."""
        return int(self._interval) + KEY_TTL_MARGIN

    def queue(self) -> Queue:
        """This scheduler's queue, with JSON jobs."""
        return Queue(
            self.queue_name, connection=self.connection, job_class=JsonJob, serializer=JSONSerializer
        )

    # -- mirrors of rq-scheduler 0.14 ----------------------------------------------------------------

    def get_queue_for_job(self, job: Job) -> Queue:
        """Mirrors ``Scheduler.get_queue_for_job``: always our queue; ``job.meta`` never names a class."""
        return self.queue()

    def acquire_lock(self) -> bool:
        """Mirrors ``Scheduler.acquire_lock``: the same key, SET NX with the same expiry, but the value
        is this scheduler's name so that ``remove_lock`` can tell its own lock from another's."""
        self._lock_acquired = bool(
            self.connection.set(self.scheduler_lock_key, self.name, ex=self.key_ttl, nx=True)
        )
        return self._lock_acquired

    def remove_lock(self) -> None:
        """Mirrors ``Scheduler.remove_lock``: deletes the lock only if this scheduler still holds it."""
        if self._lock_acquired:
            self._lock_acquired = False
            self.connection.eval(_RELEASE_LOCK, 1, self.scheduler_lock_key, self.name)

    def enqueue_jobs(self) -> list[Job]:
        """Mirrors ``Scheduler.enqueue_jobs``: moves each due job of this queue onto the queue (and
        schedules its next run) one by one, so that one bad entry never stops the others.

        Redis errors propagate (the caller rides out outages); any other failure belongs to the
        entry that caused it, which is taken off the schedule with a warning.
        """
        moved = []
        for raw_id in self.connection.zrangebyscore(self.scheduled_jobs_key, 0, time.time()):
            job_id = raw_id.decode(errors="replace")
            job = self._due_job(job_id)
            if job is None:
                continue
            try:
                self.enqueue_job(job)
            except RedisError:
                raise
            except Exception as error:  # a planted entry can fail in any way
                self._refuse(job_id, f"cannot be enqueued: {first_line(error)}")
                continue
            logger.info("moved scheduled job %r (%s) onto queue %r", job_id, job.func_name, self.queue_name)
            moved.append(job)
        return moved

    # -- our additions -------------------------------------------------------------------------------

    def keep_alive(self) -> None:
        """Refresh this scheduler's key (``Scheduler.heartbeat``); when the key is gone (first pass, an
        outage longer than its TTL, or a Redis that lost its data) register the birth again."""
        if not self.connection.expire(self.key, self.key_ttl):
            self.register_birth()

    def _due_job(self, job_id: str) -> Job | None:
        """The due job ``job_id`` if this scheduler should move it, else None (refused or not ours)."""
        try:
            job = self.job_class.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            self.cancel(job_id)  # the library does the same: its hash expired or was deleted
            return None
        except RedisError:
            raise
        except Exception as error:  # an invalid id or corrupt fields, from Redis
            self._refuse(job_id, f"cannot be read: {first_line(error)}")
            return None
        if job.origin != self.queue_name:
            return None  # another queue's scheduler moves it
        reason = refusal(job, self.registered)
        if reason is not None:
            self._refuse(job_id, reason)
            return None
        return job

    def _refuse(self, job_id: str, reason: str) -> None:
        self.cancel(job_id)
        logger.warning("scheduled job %r refused and taken off the schedule: %s", job_id, reason)
