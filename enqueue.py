"""Enqueue one unique classification job per unclassified content id (lacking a configured model's classification).

python enqueue.py --all | --limit N | --ids 1,2,3 [--dry-run] [--wait [--timeout SECONDS]]

Exit status: 0 when everything asked for was done; 1 when a job failed, the wait timed out, or a
service failed (one line on stderr); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from cli.errors import EXIT_FAILURE, run_command
from config import settings
from db.existence import require_existing_database
from db.queries import contents_by_id, unclassified_previews
from db.session import session_scope
from jobs.progress import summarize, wait_for_jobs
from jobs.queue import enqueue_ids
from jobs.sweep import sweep
from services.redis_connection import connect_for_jobs, redis_url

#: contents enqueued when no selection is given.
DEFAULT_LIMIT = 10


def content_ids(value: str) -> list[int]:
    """Parse ``1,2,3`` into ids; argparse turns the error into a usage message and exit 2."""
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(f"{part!r} is not a content id (ids are whole numbers >= 1)")
        ids.append(int(part))
    return ids


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds > 0")
    return seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="enqueue.py", description="Enqueue unclassified contents.")
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--all", action="store_true", help="every unclassified content")
    selection.add_argument(
        "--limit", type=positive_int, help=f"the N oldest unclassified (default {DEFAULT_LIMIT})"
    )
    selection.add_argument("--ids", type=content_ids, help="these content ids, comma-separated")
    parser.add_argument("--dry-run", action="store_true", help="list what would be enqueued; enqueue nothing")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the jobs end, then a summary; exit 1 if any failed",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --wait: stop waiting after SECONDS (exit 1 if jobs are still waiting)",
    )
    args = parser.parse_args(argv)
    if args.timeout is not None and not args.wait:
        parser.error("--timeout goes with --wait")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = settings()
    limit = None if args.all else (args.limit or DEFAULT_LIMIT)
    if args.dry_run:
        require_existing_database(config.database_url)  # opening a missing SQLite file would create it
        with session_scope(config.database_url) as session:
            if args.ids:
                contents = contents_by_id(session, args.ids)
                listed = [
                    (content_id, contents[content_id].text if content_id in contents else None)
                    for content_id in args.ids
                ]
            else:
                listed = unclassified_previews(session, config.model_names, limit)
            count = 0
            for content_id, text in listed:
                preview = " ".join(text.split())[:60] if text is not None else "(no such content)"
                print(f"{content_id}\t{preview}")
                count += 1
        print(f"dry run: {count} contents would be enqueued", file=sys.stderr)
        return 0
    connection = connect_for_jobs(redis_url(config))
    require_existing_database(config.database_url)
    if args.ids:
        report = enqueue_ids(connection, config.database_url, args.ids)
    else:
        report = sweep(connection, config.database_url, limit)
    print(report.describe())
    if report.stopped is not None:
        print(
            f"enqueue.py: error: Redis refused more jobs, it is out of memory ({report.stopped}): "
            f"{len(report.enqueued)} enqueued, the rest not; free memory in Redis or raise its maxmemory, "
            "then enqueue again",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if not args.wait or not report.job_ids:
        return 0
    sys.stdout.flush()  # the report line before the wait's messages on stderr
    wait = wait_for_jobs(
        connection, report.job_ids, config.queue_name, show_progress=sys.stderr.isatty(), timeout=args.timeout
    )
    summary = summarize(connection, config.database_url, report, wait, config.model_names)
    for line in summary.lines():
        print(line)
    return 0 if summary.complete else EXIT_FAILURE


if __name__ == "__main__":
    run_command("enqueue.py", main)
