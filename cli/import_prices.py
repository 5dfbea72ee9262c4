"""``volfefe import-prices FILE``: one line per row named (rejected or conflicting), then the counts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a CSV file, or JSON Lines (.jsonl, .ndjson, .json)")
    parser.add_argument(
        "--resolution", metavar="RES", help="the bars' length for rows without a resolution column: 1m, 5m, 1h, 1d"
    )
    parser.add_argument(
        "--encoding", metavar="NAME", help="read the file as NAME (e.g. latin-1, cp1252) instead of UTF-8"
    )


def import_prices(database_url: str, args: argparse.Namespace) -> int:
    """Exit 1 when any row was rejected or conflicting (the others are loaded)."""
    from market.importer import MAX_LISTED, import_prices_file, listed_problems

    report = import_prices_file(database_url, args.file, args.resolution, encoding=args.encoding)
    for line, kind, reason in listed_problems(report):
        print(f"{args.file}: line {line}: {kind}: {reason}", file=sys.stderr)
    for kind, listed, total in (
        ("rejected", len(report.rejected), report.rejected_total),
        ("conflicting", len(report.conflicting), report.conflicting_total),
    ):
        if total > listed:
            print(f"{args.file}: {total - listed} more {kind} rows not listed (the first {MAX_LISTED} are)", file=sys.stderr)
    print(
        f"inserted {report.inserted}, already present {report.already_present}, "
        f"conflicting {report.conflicting_total}, rejected {report.rejected_total} (read as {report.read_as})"
    )
    return 0 if report.ok else 1
