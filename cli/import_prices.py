"""``volfefe import-prices FILE``: one line per row named (rejected or conflicting), then the counts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config import Settings, settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a CSV file, or JSON Lines (.jsonl, .ndjson, .json)")
    parser.add_argument(
        "--resolution",
        metavar="RES",
        help="the bars' length for rows without a resolution column: 1m, 5m, 1h, 1d",
    )
    parser.add_argument(
        "--encoding", metavar="NAME", help="read the file as NAME (e.g. latin-1, cp1252) instead of UTF-8"
    )


def import_prices(database_url: str, args: argparse.Namespace, config: Settings | None = None) -> int:
    """Exit 1 when any row was rejected or conflicting (the others are loaded). When bars were added,
    the reactions of the posts they cover are enqueued (again)."""
    from market.importer import MAX_LISTED, import_prices_file, listed_problems

    report = import_prices_file(database_url, args.file, args.resolution, encoding=args.encoding)
    for line, kind, reason in listed_problems(report):
        print(f"{args.file}: line {line}: {kind}: {reason}", file=sys.stderr)
    for kind, listed, total in (
        ("rejected", len(report.rejected), report.rejected_total),
        ("conflicting", len(report.conflicting), report.conflicting_total),
    ):
        if total > listed:
            print(
                f"{args.file}: {total - listed} more {kind} rows not listed (the first {MAX_LISTED} are)",
                file=sys.stderr,
            )
    print(
        f"inserted {report.inserted}, already present {report.already_present}, "
        f"conflicting {report.conflicting_total}, rejected {report.rejected_total} (read as {report.read_as})"
    )
    if report.inserted and report.first_ts is not None and report.last_ts is not None:
        _react_to(config or settings(), report)
    return 0 if report.ok else 1


def _react_to(config: Settings, report) -> None:
    """Record the import and enqueue the reactions of the posts its bars cover; when Redis cannot be
    reached, say so: the hourly sweep enqueues them (the import is recorded first)."""
    from redis.exceptions import RedisError

    from db.session import session_scope
    from errors import VolfefeError, first_line
    from jobs.queue import enqueue_reactions
    from jobs.react import posts_covered, record_import
    from services.redis_connection import connect_for_jobs, redis_url

    record_import(
        config.database_url, sorted(report.symbols), report.first_ts, report.last_ts, report.inserted
    )
    with session_scope(config.database_url) as session:
        covered = posts_covered(session, sorted(report.symbols), report.first_ts, report.last_ts)
    if not covered:  # no post yet: nothing to enqueue (posts classified later are enqueued then)
        return
    try:
        connection = connect_for_jobs(redis_url(config))
        enqueued = enqueue_reactions(connection, config.database_url, covered, config.queue_name, again=True)
    except (RedisError, VolfefeError) as error:
        print(
            f"volfefe import-prices: warning: reactions not enqueued now ({first_line(error)}); "
            "the hourly sweep enqueues them",
            file=sys.stderr,
        )
        return
    print(f"reactions of the posts these bars cover: {enqueued.describe()}")
