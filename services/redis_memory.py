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

import re

from redis import Redis
from redis.exceptions import NoPermissionError, OutOfMemoryError, ResponseError

from errors import VolfefeError, first_line

#: the one policy that never deletes a key to make room.
NO_EVICTION = "noeviction"


#: Redis's refusal when a Lua script's first write meets a full Redis: "@user_script:15: ... -OOM ...".
_SCRIPT_OUT_OF_MEMORY = re.compile(r"-(OOM command not allowed\b.*)")


def out_of_memory(error: ResponseError) -> str | None:
    """Redis's out-of-memory refusal in one line, or None when ``error`` is another one.

    A command refused for memory is redis-py's ``OutOfMemoryError``; a script that passed Redis's check
    at its start and met the limit at its first write (so it wrote nothing) comes back as a plain
    ``ResponseError`` whose text carries Redis's ``-OOM`` line after the script's position."""
    text = first_line(error)
    if isinstance(error, OutOfMemoryError):  # redis-py took Redis's "OOM" code off the text
        return text if text.startswith("OOM") else f"OOM {text}"
    found = _SCRIPT_OUT_OF_MEMORY.search(text)
    return found.group(1) if found else None


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
