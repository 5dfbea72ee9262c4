"""The Markdown section appended to BENCHMARKS.md, and the targets check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.ceiling import best_layout, layout_for
from bench.engine_report import (
    agreement_lines,
    ceiling_again_lines,
    ceiling_again_targets,
    engine_lines,
    engine_targets,
    long_post_lines,
    long_post_targets,
)
from bench.markdown import number as _f
from bench.markdown import percent as _pct
from bench.markdown import table as _table
from bench.market_report import market_lines, market_targets
from bench.scale_report import scale_lines, scale_targets
from bench.targets import Target, one_model

INTRO = """# Benchmarks

Figures measured by `python -m bench.run` (see `bench/README.md`): the classifier alone (the
ceiling), the queue pipeline end to end on SQLite and PostgreSQL, idle latency, worker memory and
the original plan's process-per-item way, all in one run on one machine with one model. Each run
appends a section below; the raw figures are in `bench/results/<timestamp>.json` (not committed).
Unless a section says otherwise the model is FinBERT-shaped with random weights: speed and memory
are real, labels are meaningless (so agreement figures are pessimistic).
"""

#: share of the ceiling the pipeline must reach at the same precision.
PIPELINE_SHARE_TARGET = 0.90
#: items/s end to end at the fastest precision.
THROUGHPUT_TARGET = 150.0
#: milliseconds, idle latency p50 (issue 10: 30 ms on PostgreSQL).
LATENCY_TARGET_MS = 30.0
#: MB, peak RSS of a worker at the default engine and precision.
RSS_TARGET_MB = 800.0


def pipeline_shares(results: dict[str, Any]) -> None:
    """Add the pipeline/ceiling ratios to each pipeline run (same layout, and best layout)."""
    torch_ceiling = results.get("ceiling") or {"layouts": []}
    for run in results.get("pipeline", []):
        if "items_per_s" not in run or not one_model(run):
            continue
        engine = run.get("engine", "torch")
        ceiling = (
            torch_ceiling
            if engine == "torch"
            else (torch_ceiling.get("engines") or {}).get(engine) or {"layouts": []}
        )
        same = layout_for(ceiling, run["precision"], run["workers"])
        best = best_layout(ceiling, run["precision"])
        run["ceiling_same_layout_items_per_s"] = same["items_per_s"] if same else None
        run["share_of_same_layout_ceiling"] = run["items_per_s"] / same["items_per_s"] if same else None
        run["ceiling_best_items_per_s"] = best["items_per_s"] if best else None
        run["ceiling_best_layout"] = best["layout"] if best else None
        run["share_of_best_ceiling"] = run["items_per_s"] / best["items_per_s"] if best else None


def _best_pipeline(
    results: dict[str, Any], database: str, precision: str | None = None
) -> dict[str, Any] | None:
    runs = [
        run
        for run in results.get("pipeline", [])
        if "items_per_s" in run
        and run["database"] == database
        and (precision is None or run["precision"] == precision)
        and run.get("engine", "torch") == "torch"
        and one_model(run)
    ]
    return max(runs, key=lambda run: run["items_per_s"], default=None)


def targets(results: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    for precision in dict.fromkeys([results["default_precision"], "fp32"]):
        run = _best_pipeline(results, "postgresql", precision)
        share = run.get("share_of_best_ceiling") if run else None
        name = f"pipeline ≥ 90% of the ceiling, {precision}, PostgreSQL"
        if run is None or share is None:
            found.append(Target(name, "–", None, ""))
            continue
        points = (share - PIPELINE_SHARE_TARGET) * 100
        measured = (
            f"{share * 100:.0f}% ({_f(run['items_per_s'])} of {_f(run['ceiling_best_items_per_s'])} items/s, "
            f"W={run['workers']} vs ceiling {run['ceiling_best_layout']})"
        )
        found.append(Target(name, measured, share >= PIPELINE_SHARE_TARGET, f"{points:+.0f} points"))

    fastest = _best_pipeline(results, "postgresql")
    name = f"fastest torch precision ≥ {THROUGHPUT_TARGET:.0f} items/s end to end (PostgreSQL)"
    if fastest is None:
        found.append(Target(name, "–", None, ""))
    else:
        rate = fastest["items_per_s"]
        found.append(
            Target(
                name,
                f"{_f(rate)} items/s ({fastest['precision']}, W={fastest['workers']})",
                rate >= THROUGHPUT_TARGET,
                f"{rate - THROUGHPUT_TARGET:+.0f} items/s, {(rate / THROUGHPUT_TARGET - 1) * 100:+.0f}%",
            )
        )

    default = results.get("default_setting") or {"engine": "torch", "precision": results["default_precision"]}
    default_label = (
        default["precision"]
        if default["engine"] == "torch"
        else f"{default['engine']} {default['precision']}"
    )
    postgres_latency = [item for item in results.get("latency", []) if item.get("database") == "postgresql"]
    latency = next(
        (item for item in postgres_latency if item.get("precision") == default_label),
        next(iter(postgres_latency), None),
    )
    name = f"idle latency p50 ≤ {LATENCY_TARGET_MS:.0f} ms (PostgreSQL)"
    if latency is None or "p50_ms" not in latency:
        found.append(Target(name, "–", None, ""))
    else:
        p50 = latency["p50_ms"]
        found.append(
            Target(
                name,
                f"{_f(p50)} ms ({latency['precision']})",
                p50 <= LATENCY_TARGET_MS,
                f"{p50 - LATENCY_TARGET_MS:+.1f} ms",
            )
        )

    peaks = [
        memory["peak_rss_mb"]
        for run in results.get("pipeline", [])
        if run.get("precision") == default["precision"]
        and run.get("engine", "torch") == default["engine"]
        and one_model(run)
        for memory in run.get("worker_memory", [])
        if "peak_rss_mb" in memory
    ]
    name = f"worker peak RSS ≤ {RSS_TARGET_MB:.0f} MB at the default ({default_label})"
    if not peaks:
        found.append(Target(name, "–", None, ""))
    else:
        peak = max(peaks)
        found.append(
            Target(name, f"{_f(peak, 0)} MB", peak <= RSS_TARGET_MB, f"{peak - RSS_TARGET_MB:+.0f} MB")
        )
    found += long_post_targets(results)
    found += ceiling_again_targets(results)
    return found + engine_targets(results) + scale_targets(results) + market_targets(results)


def _default_label(results: dict[str, Any]) -> str:
    default = results.get("default_setting") or {"engine": "torch", "precision": results["default_precision"]}
    return f"{default['engine']} {default['precision']}"


def render_section(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"## {results['date']}{' (--quick)' if results['quick'] else ''}",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM; "
        f"{machine['accelerators']} (flags: {', '.join(machine['flags']) or 'none'}); "
        f"torch {machine['torch']} (CPU capability {results.get('torch_cpu_capability', '?')}), "
        f"transformers {machine['transformers']}, rq {machine['rq']}, Python {machine['python']}, "
        f"Linux {machine['kernel']}.",
        f"- Load average (1 min) at start {results['load_start']:.2f}, at end {results['load_end']:.2f}"
        " (the end includes the benchmark's own last part)"
        + (
            " — **other work was running at the start: the figures are distorted**."
            if results["load_start"] > results["busy_load"]
            else "."
        ),
        f"- Model: `{results['model']}`; texts: `{results['texts_file']}`, {results['items']} of them; "
        f"default here: {_default_label(results)} (torch's precision: {results['default_precision']}), "
        f"batch size {results['batch_size']}.",
        f"- Command: `{results['command']}` ({results['total_seconds'] / 60:.1f} min).",
    ]
    if results["quick"]:
        lines.append("- `--quick`: smaller sizes, a smoke check of the benchmark rather than a measurement.")
    lines.append("")
    ceiling = results.get("ceiling")
    if ceiling:
        lines += ["### Ceiling: the classifier alone (sorted batches of 32)", ""]
        rows = [
            [
                item["precision"],
                f"{item['processes']} × {item['threads']} thread(s)",
                str(item["items"]),
                _f(item["seconds"], 2),
                _f(item["items_per_s"]),
                _f(item.get("cold_items_per_s")),
                _f(item.get("cpu_ms_per_item"), 2),
                _f(item["peak_rss_mb"], 0),
            ]
            for item in ceiling["layouts"]
        ]
        header = ["precision", "layout", "items", "seconds", "items/s (warm: the ceiling)"]
        header += ["items/s, first pass (cold)", "CPU ms per item (warm)", "peak RSS per process (MB)"]
        lines += _table(header, rows)
        sweep = ceiling["batch_sweep"]
        if sweep["results"]:
            lines += [
                "",
                f"### Batch size ({sweep['precision']}, 1 process × 2 threads, {sweep['subset_items']} texts spread over the set)",
                "",
            ]
            base = next((item["items_per_s"] for item in sweep["results"] if item["batch_size"] == 1), None)
            rows = [
                [
                    str(item["batch_size"]),
                    _f(item["items_per_s"]),
                    f"{item['items_per_s'] / base:.2f}×" if base else "–",
                    _f(item.get("cold_items_per_s")),
                ]
                for item in sweep["results"]
            ]
            lines += _table(
                ["batch size", "items/s (warm)", "vs batch 1", "items/s, first pass (cold)"], rows
            )
        if ceiling["agreement"] and not (results.get("agreement") or {}).get("models"):
            lines += ["", "### Agreement with fp32 (batch 32, all texts, random weights)", ""]
            rows = [
                [
                    precision,
                    f"{item['same_label_share'] * 100:.2f}% ({item['disagreements']} of {item['items']} differ)",
                    _f(item["max_abs_confidence_diff"], 4),
                    _f(item["max_fp32_margin_where_disagreeing"], 4),
                ]
                for precision, item in ceiling["agreement"].items()
            ]
            lines += _table(
                [
                    "precision",
                    "same label",
                    "max |Δ confidence|",
                    "largest fp32 top-2 margin among disagreements",
                ],
                rows,
            )
        if ceiling["errors"]:
            lines += ["", *[f"- Ceiling error: {error}" for error in ceiling["errors"]]]
        lines.append("")

    runs = results.get("pipeline", [])
    if runs:
        lines += ["### Pipeline end to end (enqueue.py --all's sweep until every row is stored)", ""]
        rows = []
        for run in runs:
            if "items_per_s" not in run:
                rows.append(
                    [run["database"], f"W={run['workers']}", str(run.get("models", 1)), run["precision"]]
                    + ["–"] * 6
                    + ["error"]
                )
                continue
            rows.append(
                [
                    run["database"],
                    f"W={run['workers']} × {run['threads_per_worker']} thread(s)",
                    str(run.get("models", 1)),
                    run["precision"]
                    if run.get("engine", "torch") == "torch"
                    else f"{run['engine']} {run['precision']}",
                    str(run["items"]),
                    _f(run["seconds"], 2),
                    _f(run["items_per_s"]),
                    _pct(run.get("share_of_same_layout_ceiling")),
                    _pct(run.get("share_of_best_ceiling")),
                    f"{_f(run.get('worker_cpu_ms_per_item'), 2)} / {_pct(run.get('worker_cpu_share'))}",
                    str(run["failed_jobs"]),
                ]
            )
        lines += _table(
            [
                "database",
                "workers",
                "models",
                "precision",
                "items",
                "seconds",
                "items/s",
                "% of ceiling, same layout",
                "% of best ceiling",
                "worker CPU ms per item / share of all cores",
                "failed jobs",
            ],
            rows,
        )
        errors = [f"- {run['label']}: {run['error']}" for run in runs if "error" in run]
        lines += ["", *errors] if errors else []
        lines.append("")
        lines += _models_lines(runs)

    latency = results.get("latency", [])
    if latency:
        lines += ["### Idle latency (one warm idle worker, one item at a time, enqueue to stored)", ""]
        rows = [
            [
                item["database"],
                item.get("precision", "–"),
                str(item.get("items", "–")),
                _f(item.get("p50_ms")),
                _f(item.get("p95_ms")),
                _f(item.get("queue_wait_p50_ms")),
                _f(item.get("job_run_p50_ms")),
                _f(item.get("forward_p50_ms")),
                _f(item.get("besides_model_p50_ms")),
            ]
            if "p50_ms" in item
            else [item["database"], item.get("precision", "–"), "error", "–", "–", "–", "–", "–", "–"]
            for item in latency
        ]
        lines += _table(
            [
                "database",
                "precision",
                "items",
                "p50 (ms)",
                "p95 (ms)",
                "queue wait p50 (ms)",
                "job run p50 (ms)",
                "forward pass p50 (ms)",
                "besides the model p50 (ms)",
            ],
            rows,
        )
        lines.append("")

    memory_rows = [
        [
            run["label"],
            run["precision"],
            str(index + 1),
            _f(memory.get("peak_rss_mb"), 0),
            _f(memory.get("rss_mb"), 0),
            f"{_f(memory.get('rss_anon_mb'), 0)} / {_f(memory.get('rss_file_mb'), 0)}",
            _f(memory.get("children_uss_mb"), 0),
        ]
        for run in runs
        for index, memory in enumerate(run.get("worker_memory", []))
    ]
    if memory_rows:
        lines += ["### Peak RSS per worker process (VmHWM at the end of the run)", ""]
        lines += _table(
            [
                "run",
                "precision",
                "worker",
                "peak RSS (MB)",
                "RSS at end (MB)",
                "of which anonymous / file-backed (MB)",
                "children, unique (MB)",
            ],
            memory_rows,
        )
        lines += [
            "",
            "File-backed memory is mostly the memory-mapped weights: page cache shared by every worker "
            "that maps the same file. The child is the scheduler that `--with-scheduler` forks (one worker holds "
            "the scheduler lock).",
        ]
        lines.append("")

    original = results.get("original")
    if original:
        lines += ["### The original plan's way (a fresh process loads the model for each item)", ""]
        if "items_per_s" in original:
            lines += _table(
                [
                    "precision",
                    "items",
                    "seconds per item",
                    "items/s",
                    "items/min",
                    "of which import / load / classify (s)",
                ],
                [
                    [
                        f"{original['precision']}, {original['threads']} threads",
                        str(original["items"]),
                        _f(original["seconds_per_item"], 2),
                        _f(original["items_per_s"], 2),
                        _f(original["items_per_min"], 1),
                        f"{original['mean_import_seconds']:.2f} / {original['mean_load_seconds']:.2f} / "
                        f"{original['mean_classify_seconds']:.3f}",
                    ]
                ],
            )
        else:
            lines.append(f"- error: {original.get('error')}")
        lines.append("")

    for precision, why in (results.get("precisions_left_out") or {}).items():
        lines += [f"- torch {precision} left out: {why}.", ""]
    lines += engine_lines(results)
    lines += long_post_lines(results)
    lines += ceiling_again_lines(results)
    lines += agreement_lines(results)
    lines += scale_lines(results)
    lines += market_lines(results)

    if results.get("errors"):
        lines += ["### Errors", "", *[f"- {error}" for error in results["errors"]], ""]

    lines += ["### Targets", ""]
    lines += _table(
        ["target", "measured", "verdict"],
        [[item.name, item.measured, item.verdict] for item in targets(results)],
    )
    lines.append("")
    return "\n".join(lines) + "\n"


def _models_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One model against several in every worker (PostgreSQL, the default precision): posts and
    classifications per second, and each worker's peak memory."""
    several = [run for run in runs if not one_model(run) and "items_per_s" in run]
    if not several:
        return []
    rows = []
    for run in several:
        one = next(
            (
                other
                for other in runs
                if one_model(other)
                and other["database"] == run["database"]
                and other["workers"] == run["workers"]
                and other["precision"] == run["precision"]
                and other.get("engine", "torch") == run.get("engine", "torch")
                and "items_per_s" in other
            ),
            None,
        )
        for item in [one, run] if one else [run]:
            peaks = [memory.get("peak_rss_mb") for memory in item.get("worker_memory", [])]
            rows.append(
                [
                    f"{item.get('models', 1)}",
                    f"W={item['workers']}",
                    item["precision"],
                    _f(item["items_per_s"]),
                    _f(item.get("classifications_per_s", item["items_per_s"])),
                    " / ".join(_f(peak, 0) for peak in peaks if peak is not None) or "–",
                ]
            )
    return [
        "### Several models in every worker (PostgreSQL)",
        "",
        *_table(
            [
                "models",
                "workers",
                "precision",
                "posts/s",
                "classifications/s (posts × models)",
                "peak RSS per worker, MB",
            ],
            rows,
        ),
        "",
    ]


def append_section(path: Path, section: str) -> None:
    """Append ``section`` to ``path``, creating it with the introduction first."""
    existing = path.read_text() if path.exists() else INTRO
    path.write_text(existing.rstrip("\n") + "\n\n" + section)
