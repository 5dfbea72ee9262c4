"""One queue, one database: which database a Redis queue serves, and when another may take it over.

Job ids carry their database's identity (``classify-content-<id>-<database id>``), so a new or reset
database never finds its ids taken by another's finished or failed jobs. The queue itself is bound
to one database at a time, so that a worker only ever receives jobs of the database it serves:
- unbound, or bound to this database: fine (the binding is written on first use);
- bound to another database that is idle (no job waiting, running or scheduled on the queue, no
  live worker of ours serving it): this database takes the queue over (a reset database, or a
  finished demo's);
- bound to another database that is busy: refused, in one line that says what to do (give this
  database its own queue with ``VOLFEFE_QUEUE``, or its own Redis).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue, Worker

from errors import VolfefeError
from jobs.rq_seam import worker_database

#: the hash naming the database a queue serves: fields database_id, database (URL without password).
BINDING_KEY = "volfefe:queue:{queue_name}"


class QueueInUse(VolfefeError):
    """The queue serves another database that is still at work."""


@dataclass(frozen=True)
class Binding:
    database_id: str
    database: str


def binding_of(connection: Redis, queue_name: str) -> Binding | None:
    """The database ``queue_name`` serves, or None when no database has used it yet."""
    fields = connection.hgetall(BINDING_KEY.format(queue_name=queue_name))
    if not fields or b"database_id" not in fields:
        return None
    return Binding(fields[b"database_id"].decode(), fields.get(b"database", b"").decode())


def _activity(connection: Redis, queue_name: str, database_id: str) -> tuple[int, int]:
    """(jobs waiting, running or scheduled on the queue; live workers of ours serving ``database_id``)."""
    queue = Queue(queue_name, connection=connection)
    registries = (queue.started_job_registry, queue.scheduled_job_registry, queue.deferred_job_registry)
    jobs = queue.count + sum(registry.get_job_count(cleanup=False) for registry in registries)
    workers = sum(
        1 for key in Worker.all_keys(connection=connection, queue=queue)
        if worker_database(connection, key) == database_id
    )  # fmt: skip
    return jobs, workers


def bind_queue(connection: Redis, queue_name: str, database_id: str, database: str) -> Binding:
    """Bind ``queue_name`` to this database (``database``: its URL without password) or raise QueueInUse.

    Returns the binding that was there before (None-like: this one, when there was none).
    """
    key = BINDING_KEY.format(queue_name=queue_name)
    ours = Binding(database_id, database)
    current = binding_of(connection, queue_name)
    if current == ours:  # every enqueue after the first: one read, nothing to write or watch
        return current
    with connection.pipeline() as pipeline:
        while True:
            try:
                pipeline.watch(key)
                current = binding_of(pipeline, queue_name)
                if current is not None and current.database_id == database_id:
                    if current.database != database:
                        pipeline.multi()
                        pipeline.hset(key, "database", database)
                        pipeline.execute()
                    return current
                if current is not None:
                    jobs, workers = _activity(connection, queue_name, current.database_id)
                    if jobs or workers:
                        raise QueueInUse(
                            f"queue {queue_name!r} on this Redis serves another database "
                            f"({current.database or 'unknown'}, id {current.database_id}) that has "
                            f"{jobs} job(s) waiting or running and {workers} live worker(s); let it finish or "
                            f"stop its workers, or give this database its own queue: set VOLFEFE_QUEUE "
                            f"(e.g. VOLFEFE_QUEUE={queue_name}_{database_id}) for its enqueuer, workers "
                            "and scheduler"
                        )
                pipeline.multi()
                pipeline.hset(key, mapping={"database_id": database_id, "database": database})
                pipeline.execute()
                return current or ours
            except WatchError:
                continue
