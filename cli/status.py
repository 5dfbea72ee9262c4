"""``volfefe status``: the queue by state, the live workers, and the database. Reads only.

It starts nothing and creates nothing: without ``REDIS_URL`` it looks at the embedded redis-server
only if that runs, and a missing SQLite file is reported, not created. A part that cannot be read is
shown as unavailable, its cause goes to standard error in one line, the rest is still shown, and
the exit status is 1.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from cli.errors import EXIT_FAILURE, explain
from cli.readonly import running_redis_url
from cli.report import build_report
from config import Settings
from db.session import describe
from errors import VolfefeError
from jobs.monitoring import live_workers, queue_counts
from model.model_marks import random_weights_warning
from services.redis_connection import connect, safe_url
from services.redis_memory import eviction_problem

#: what status says when the embedded Redis is not running (and REDIS_URL is unset).
REDIS_NOT_RUNNING = "the embedded Redis is not running: no jobs to show"


def _queue_part(config: Settings) -> dict:
    """The queue's counts, workers and binding; ``redis_error`` when Redis could not be read."""
    url = running_redis_url(config)
    part: dict = {"redis": safe_url(url) if url else None, "jobs": None, "workers": [], "binding": None}
    if url is None:
        return part
    try:
        connection = connect(url)
        part["jobs"] = queue_counts(connection, config.queue_name).as_dict()
        part["workers"] = [asdict(worker) for worker in live_workers(connection, config.queue_name)]
        part["binding"] = _binding(connection, config.queue_name)
        part["redis_warning"] = eviction_problem(connection)
    except (VolfefeError, RedisError) as error:
        part["redis_error"] = explain(error)
    return part


def _binding(connection, queue_name: str) -> dict | None:
    from jobs.binding import binding_of

    binding = binding_of(connection, queue_name)
    return asdict(binding) if binding is not None else None


def _database_part(config: Settings) -> dict:
    """The database's counts; ``database_error`` when they could not be read."""
    database_url = config.database_url
    part: dict = {"database_url": describe(database_url), "database": None}
    try:
        report = build_report(database_url, config)
        part["database_id"] = _database_id(database_url)
    except (VolfefeError, DBAPIError) as error:
        part["database_error"] = explain(error)
        return part
    keys = ("contents", "classified", "partly_classified", "skipped", "unclassified")
    part["database"] = {key: report[key] for key in keys}
    part["unclassified_by_model"] = {
        name: figures["unclassified"] for name, figures in report["models"].items()
    }
    part["sentiments"] = report["sentiments"]
    part["random_weight_classifications"] = report["random_weight_classifications"]
    return part


def _database_id(database_url: str) -> str | None:
    from db.identity import DatabaseNotInitialised, database_id

    try:
        return database_id(database_url)
    except DatabaseNotInitialised:
        return None


def build_status(config: Settings) -> dict:
    """Queue, workers and database; ``redis_error`` / ``database_error`` for a part that could not be read."""
    return {"queue": config.queue_name, **_queue_part(config), **_database_part(config)}


def problems(status: dict) -> list[str]:
    """The one-line causes of the parts that could not be read (empty when all could)."""
    return [status[key] for key in ("redis_error", "database_error") if status.get(key)]


def render_status(status: dict) -> str:
    if status.get("redis_error"):
        lines = [f"queue {status['queue']}: unavailable (Redis could not be read)"]
    elif status["jobs"] is None:
        lines = [f"queue {status['queue']}: {REDIS_NOT_RUNNING}"]
    else:
        jobs = ", ".join(f"{state} {count}" for state, count in status["jobs"].items())
        lines = [f"queue {status['queue']} on {status['redis']}: {jobs}"]
        binding = status["binding"]
        if binding and status.get("database_id") and binding["database_id"] != status["database_id"]:
            lines.append(
                f"  the queue serves another database ({binding['database'] or binding['database_id']}): "
                "these jobs are not this database's"
            )
        if status.get("redis_warning"):
            lines.append(f"  warning: {status['redis_warning']}")
        lines.append(f"workers {len(status['workers'])}")
    for worker in status["workers"]:
        doing = ", ".join(worker["current_jobs"]) or "-"
        lines.append(
            f"  {worker['name']} pid {worker['pid']} {worker['state']}: running {doing}; "
            f"done {worker['successful_jobs']}, failed {worker['failed_jobs']}"
        )
    database = status["database"]
    if database is None:
        lines.append(f"database {status['database_url']}: unavailable")
        return "\n".join(lines)
    partly = f", partly classified {database['partly_classified']}" if database["partly_classified"] else ""
    lines.append(
        f"database {status['database_url']}: contents {database['contents']}, "
        f"classified {database['classified']}{partly}, skipped {database['skipped']}, "
        f"unclassified {database['unclassified']}"
    )
    lines.append(
        "unclassified by model: "
        + ", ".join(f"{name} {count}" for name, count in status["unclassified_by_model"].items())
    )
    lines.append("sentiments: " + ", ".join(f"{k} {v}" for k, v in status["sentiments"].items()))
    lines += random_weights_warning(status["random_weight_classifications"])
    return "\n".join(lines)


def print_status(config: Settings, as_json: bool = False, program: str = "volfefe") -> int:
    """Print the status; when a part could not be read, exit status 1 and one line on stderr,
    ``<program>: error: <cause>[; <cause>]``."""
    status = build_status(config)
    print(json.dumps(status, indent=2) if as_json else render_status(status))
    causes = problems(status)
    if causes:
        sys.stdout.flush()  # the status first, then why part of it is missing
        print(f"{program}: error: {'; '.join(causes)}", file=sys.stderr)
    return EXIT_FAILURE if causes else 0
