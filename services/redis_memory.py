"""Redis's memory policy: a Redis that evicts keys when full loses jobs without a trace.

With ``maxmemory`` set and an evicting ``maxmemory-policy`` (``allkeys-*``, or ``volatile-*``, which
evicts keys that have a TTL: workers', locks', finished jobs'), Redis deletes keys to make room: a job
whose hash is gone is passed over by the workers, and its post is never classified, with nothing said.
``noeviction`` (Redis's default) refuses writes instead: ``enqueue.py`` reports what did not fit,
workers wait for room as for an outage.

What each process does about an evicting policy: those that write jobs (``enqueue.py``, ``volfefe
run``, ``volfefe reclassify``, workers) refuse to start, since every job they write could vanish;
those that only watch or schedule (``volfefe web``, ``volfefe status``, ``scheduler.py``) warn in one
line, so that the operator sees why, without losing the view of the queue.
"""

from __future__ import annotations

from redis import Redis
from redis.exceptions import NoPermissionError, ResponseError

from errors import VolfefeError

#: the one policy that never deletes a key to make room.
NO_EVICTION = "noeviction"


class RedisEvicts(VolfefeError):
    """Redis would delete jobs to make room: a setting to change before any job is written."""


def eviction_problem(connection: Redis) -> str | None:
    """One line saying why Redis's memory policy loses jobs, or None when it does not (or cannot be
    read: ``INFO`` refused)."""
    try:
        memory = connection.info("memory")
    except (NoPermissionError, ResponseError):
        return None
    maxmemory = int(memory.get("maxmemory", 0) or 0)
    policy = str(memory.get("maxmemory_policy", NO_EVICTION))
    if maxmemory == 0 or policy == NO_EVICTION:
        return None
    limit = memory.get("maxmemory_human", f"{maxmemory} bytes")
    return (
        f"Redis deletes keys when it is full (maxmemory {limit}, maxmemory-policy {policy}): a deleted job "
        f"is lost without a trace; set maxmemory-policy noeviction"
    )


def refuse_eviction(connection: Redis) -> None:
    """Raise RedisEvicts when Redis's memory policy loses jobs."""
    problem = eviction_problem(connection)
    if problem is not None:
        raise RedisEvicts(problem)
