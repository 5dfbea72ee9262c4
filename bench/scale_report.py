"""The scale part's table and targets in the BENCHMARKS.md section (bench.scale's figures)."""

from __future__ import annotations

from typing import Any

from bench.markdown import number as _f
from bench.markdown import table as _table
from bench.targets import Target

#: new jobs per second, ``enqueue.py --all`` (the command's whole run).
ENQUEUE_RATE_TARGET = 20_000.0
#: seconds, a second ``enqueue.py --all`` while 100,000 jobs wait.
SECOND_ENQUEUE_TARGET_S = 2.0
#: milliseconds, one query of the sweep (a page of unclassified ids) at 1,000,000 contents.
SWEEP_QUERY_TARGET_MS = 100.0
#: share of its job timeout the hourly sweep of 1,000,000 new contents may take ("well inside").
SWEEP_TIMEOUT_SHARE = 0.5


def _size(results: dict[str, Any], contents: int) -> dict[str, Any] | None:
    sizes = (results.get("scale") or {}).get("sizes", [])
    return next((size for size in sizes if size.get("contents") == contents), None)


def scale_lines(results: dict[str, Any]) -> list[str]:
    """The scale table (empty when the part did not run)."""
    scale = results.get("scale")
    if not scale:
        return []
    rows = []
    for size in scale.get("sizes", []):
        query = size["sweep_query"]
        sweep = size["scheduled_sweep"]
        rows.append(
            [
                f"{size['contents']:,}",
                f"{_f(size['enqueue']['s'])} s ({_f(size['enqueue']['jobs_per_s'], 0)} jobs/s)",
                f"{_f(size['second_enqueue']['s'])} s",
                f"{_f(size['redis_bytes_per_job'], 0)}",
                f"{_f(size['status']['s'], 2)} s",
                f"{_f(query['page_s'] * 1000)} ms / {_f(query['all_pages_s'], 2)} s"
                + ("" if query["uses_index"] else " (no index)"),
                f"{_f(size['dry_run']['s'])} s (exit {size['dry_run']['exit']})",
                f"{_f(sweep.get('s'))} s of {sweep['timeout_s']} s ({sweep['status']})",
            ]
        )
    lines = ["### Scale (PostgreSQL, no model)", ""]
    lines += _table(
        [
            "contents",
            "`enqueue.py --all`",
            "again, all waiting",
            "Redis bytes per waiting job",
            "`volfefe status`",
            "sweep query: a page / all pages",
            "`--dry-run`",
            "hourly sweep as scheduled",
        ],
        rows,
    )
    lines += [
        "",
        "Commands timed from start to exit (Python start-up included). The sweep reads unclassified ids in "
        "keyset pages of 5,000 (each page one indexed query) and enqueues each page as it arrives. Redis is "
        "configured as the embedded one (`hash-max-ziplist-value 128`: a waiting job's hash stays compact).",
        "",
    ]
    return lines


def scale_targets(results: dict[str, Any]) -> list[Target]:
    """Enqueue rate, second enqueue, the sweep's query and the hourly sweep at scale."""
    found = []
    small, large = _size(results, 100_000), _size(results, 1_000_000)
    name = f"enqueue ≥ {ENQUEUE_RATE_TARGET:,.0f} new jobs/s (`enqueue.py --all`, 100,000)"
    if small is None:
        found.append(Target(name, "–", None, ""))
    else:
        rate = small["enqueue"]["jobs_per_s"]
        found.append(
            Target(
                name,
                f"{rate:,.0f} jobs/s",
                rate >= ENQUEUE_RATE_TARGET,
                f"{rate / ENQUEUE_RATE_TARGET - 1:+.0%}",
            )
        )
    name = f"second enqueue of 100,000 waiting ids ≤ {SECOND_ENQUEUE_TARGET_S:g} s"
    if small is None:
        found.append(Target(name, "–", None, ""))
    else:
        seconds = small["second_enqueue"]["s"]
        found.append(
            Target(
                name,
                f"{seconds:.2f} s",
                seconds <= SECOND_ENQUEUE_TARGET_S,
                f"{seconds - SECOND_ENQUEUE_TARGET_S:+.2f} s",
            )
        )
    name = f"the sweep's query ≤ {SWEEP_QUERY_TARGET_MS:g} ms at 1,000,000 (a page)"
    if large is None:
        found.append(Target(name, "–", None, ""))
    else:
        ms = large["sweep_query"]["page_s"] * 1000
        found.append(
            Target(name, f"{ms:.1f} ms", ms <= SWEEP_QUERY_TARGET_MS, f"{ms - SWEEP_QUERY_TARGET_MS:+.1f} ms")
        )
    name = f"hourly sweep of 1,000,000 new contents ≤ {SWEEP_TIMEOUT_SHARE:.0%} of its timeout"
    sweep = large["scheduled_sweep"] if large else None
    if sweep is None or sweep.get("s") is None:
        found.append(Target(name, "–", None, ""))
    else:
        limit = sweep["timeout_s"] * SWEEP_TIMEOUT_SHARE
        met = sweep["status"] == "finished" and sweep["s"] <= limit
        found.append(
            Target(
                name,
                f"{sweep['s']:.0f} s of {sweep['timeout_s']} s ({sweep['status']})",
                met,
                f"{sweep['s'] - limit:+.0f} s",
            )
        )
    return found
