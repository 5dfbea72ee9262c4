"""``volfefe status``: the queue by state, the live workers, and the database, read-only."""

from __future__ import annotations

import json
from dataclasses import asdict

from cli.report import build_report
from jobs.monitoring import live_workers, queue_counts
from jobs.queue import QUEUE_NAME
from services.redis_connection import connect


def build_status(redis_url: str, database_url: str) -> dict:
    connection = connect(redis_url)
    report = build_report(database_url)
    return {
        "queue": QUEUE_NAME,
        "jobs": queue_counts(connection).as_dict(),
        "workers": [asdict(worker) for worker in live_workers(connection)],
        "database": {key: report[key] for key in ("contents", "classified", "skipped", "unclassified")},
        "sentiments": report["sentiments"],
    }


def render_status(status: dict) -> str:
    jobs = ", ".join(f"{state} {count}" for state, count in status["jobs"].items())
    lines = [f"queue {status['queue']}: {jobs}", f"workers {len(status['workers'])}"]
    for worker in status["workers"]:
        doing = ", ".join(worker["current_jobs"]) or "-"
        lines.append(
            f"  {worker['name']} pid {worker['pid']} {worker['state']}: running {doing}; "
            f"done {worker['successful_jobs']}, failed {worker['failed_jobs']}"
        )
    database = status["database"]
    lines.append(
        f"contents {database['contents']}: classified {database['classified']}, "
        f"skipped {database['skipped']}, unclassified {database['unclassified']}"
    )
    lines.append("sentiments: " + ", ".join(f"{k} {v}" for k, v in status["sentiments"].items()))
    return "\n".join(lines)


def print_status(redis_url: str, database_url: str, as_json: bool = False) -> None:
    status = build_status(redis_url, database_url)
    print(json.dumps(status, indent=2) if as_json else render_status(status))
