"""The jobs this project runs: a worker executes only these, with arguments of the expected shape.

Nothing read from Redis decides what code runs: a job naming any other function (or a callback,
or a webhook), or whose payload is not JSON of the expected shape, is refused: it ends in the
failed registry with a one-line reason, unrun.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rq.job import Job

from config import MODEL_NAME
from jobs.rq_seam import callback_names, job_payload

CLASSIFY_FUNCTION = "jobs.classify.classify_content"
SWEEP_FUNCTION = "jobs.sweep.scheduled_sweep"
RECLASSIFY_FUNCTION = "jobs.classify.reclassify_content"
REACT_FUNCTION = "jobs.react.react_content"
#: a database identity as ``volfefe db upgrade`` makes it (hex digits).
DATABASE_ID = re.compile(r"[0-9a-f]{6,32}")
#: the largest content id: ``contents.id`` is a 32-bit INTEGER on PostgreSQL, and a larger id in a
#: job would fail the whole batch's read (then run each of its jobs alone).
MAX_CONTENT_ID = 2**31 - 1

ArgumentCheck = Callable[[list, dict], str | None]


def check_classify_arguments(args: list, kwargs: dict) -> str | None:
    """``[content_id, database_id]``: a positive whole number and a database identity; nothing else."""
    if kwargs or len(args) != 2:
        return "classify_content takes exactly [content_id, database_id]"
    content_id, database_id = args
    if type(content_id) is not int or content_id < 1:
        return f"content id {content_id!r} is not a whole number >= 1"
    if content_id > MAX_CONTENT_ID:
        return f"content id {content_id} is beyond any content's (at most {MAX_CONTENT_ID})"
    if not isinstance(database_id, str) or not DATABASE_ID.fullmatch(database_id):
        return f"database id {str(database_id)[:40]!r} is not a database identity"
    return None


def check_reclassify_arguments(args: list, kwargs: dict) -> str | None:
    """``[content_id, database_id, force]`` or ``[content_id, database_id, force, model]``: as for
    classify_content, a true/false force, and a model name (default: every configured model)."""
    if kwargs or len(args) not in (3, 4):
        return "reclassify_content takes exactly [content_id, database_id, force] or [..., force, model]"
    if type(args[2]) is not bool:
        return f"force {str(args[2])[:20]!r} is not true or false"
    if len(args) == 4 and not (isinstance(args[3], str) and MODEL_NAME.fullmatch(args[3])):
        return f"model {str(args[3])[:40]!r} is not a model name"
    problem = check_classify_arguments(args[:2], {})
    return problem.replace("classify_content takes", "reclassify_content takes") if problem else None


def check_no_arguments(args: list, kwargs: dict) -> str | None:
    return "this job takes no arguments" if args or kwargs else None


#: function name -> its argument check: every job a worker of this project will run.
REGISTERED_JOBS: Mapping[str, ArgumentCheck] = {
    CLASSIFY_FUNCTION: check_classify_arguments,
    SWEEP_FUNCTION: check_no_arguments,
    RECLASSIFY_FUNCTION: check_reclassify_arguments,
    REACT_FUNCTION: check_classify_arguments,
}


def refusal(job: Job, registered: Mapping[str, ArgumentCheck] = REGISTERED_JOBS) -> str | None:
    """Why ``job`` must not run (one line), or None when it is one of ``registered`` with good arguments."""
    payload = job_payload(job)
    if payload is None:
        return "its payload is not JSON of an RQ job (jobs of this project are JSON, never pickle)"
    function, args, kwargs = payload
    check = registered.get(function) if isinstance(function, str) else None
    if check is None:
        return f"function {str(function)[:120]!r} is not a job of this project"
    foreign = [name for name in callback_names(job) if name not in registered]
    if foreign:
        return f"callback {foreign[0][:120]!r} is not a job of this project"
    if job.webhooks:
        return "jobs of this project have no webhooks"
    if job.instance is not None:
        return f"{function}: jobs of this project call functions, not methods of an object"
    problem = check(args, kwargs)
    return f"{function}: {problem}" if problem else None


def arguments(job: Job) -> list[Any]:
    """The job's arguments (for a job that ``refusal`` accepted)."""
    payload = job_payload(job)
    return payload[1] if payload else []
