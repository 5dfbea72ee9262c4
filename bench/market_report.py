"""The price import and reaction parts' tables and target in the BENCHMARKS.md section (issue 17)."""

from __future__ import annotations

from typing import Any

from bench.markdown import number as _f
from bench.markdown import table as _table
from bench.targets import Target

#: posts whose reactions the hourly sweep's timeout must cover (issue 17).
REACTION_TARGET_POSTS = 100_000


def market_lines(results: dict[str, Any]) -> list[str]:
    """The two tables (each left out when its part did not run), with the parts' own output."""
    lines: list[str] = []
    prices = results.get("prices")
    if prices:
        rows = [
            [
                backend,
                run["label"],
                f"{run['inserted']:,} / {run['already_present']:,}",
                _f(run["s"]),
                f"{prices['bars'] / run['s']:,.0f}",
                f"{run['load_start']:.2f} → {run['load_end']:.2f}",
            ]
            for backend, runs in prices["backends"].items()
            for run in runs
        ]
        lines += [
            f"### Price import: {prices['bars']:,} minute bars of {prices['symbols']} symbols "
            f"({prices['csv_mb']:.0f} MB CSV), `volfefe import-prices`'s code",
            "",
        ]
        lines += _table(["database", "run", "inserted / already present", "seconds", "bars/s", "load"], rows)
        lines += ["", "```", *prices["output"], "```", ""]
    reactions = results.get("reactions")
    if reactions:
        lines += [
            f"### Reactions end to end: {reactions['posts']:,} posts, the hourly sweep's step and "
            f"{reactions['workers']} workers (PostgreSQL)",
            "",
        ]
        lines += _table(
            [
                "posts (links)",
                "`reactions_due`",
                "sweep step: query + enqueue",
                "enqueue to last job ended",
                "jobs/s",
                f"within {reactions['sweep_timeout_s']} s",
            ],
            [
                [
                    f"{reactions['posts']:,} ({reactions['links']:,})",
                    f"{_f(reactions['due_query_s'], 2)} s",
                    f"{_f(reactions['sweep_step_s'])} s ({reactions['enqueued'] / reactions['sweep_step_s']:,.0f} jobs/s)",
                    f"{_f(reactions['wall_s'])} s",
                    f"{reactions['jobs_per_s']:,.0f}",
                    "yes" if reactions["fits"] else "**no**",
                ]
            ],
        )
        lines += ["", "```", *reactions["output"], "```", ""]
    return lines


def market_targets(results: dict[str, Any]) -> list[Target]:
    """The reaction of 100,000 posts within the hourly sweep's timeout (measured at that size only)."""
    name = f"reactions of {REACTION_TARGET_POSTS:,} posts within the hourly sweep's timeout"
    reactions = results.get("reactions")
    if not reactions or reactions.get("posts") != REACTION_TARGET_POSTS:
        measured = f"{reactions['posts']:,} posts: {reactions['wall_s']:.0f} s" if reactions else "–"
        return [Target(name, measured, None, "")]
    limit = reactions["sweep_timeout_s"]
    return [
        Target(
            name,
            f"{reactions['wall_s']:.0f} s of {limit} s",
            bool(reactions["fits"]),
            f"{reactions['wall_s'] - limit:+.0f} s",
        )
    ]
