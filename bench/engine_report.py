"""The engines' tables and targets in the BENCHMARKS.md section (bench.ceiling's ``engines`` figures and
the pipeline runs of each engine)."""

from __future__ import annotations

from typing import Any

from bench.markdown import number, table
from bench.targets import Target

#: items/s end to end for the fastest engine and precision with >= AGREEMENT_FLOOR label agreement.
ENGINE_THROUGHPUT_TARGET = 190.0
#: share of torch fp32's labels an engine and precision must keep to be a candidate for the default.
AGREEMENT_FLOOR = 0.99
#: share of its own ceiling the pipeline must reach.
PIPELINE_SHARE_TARGET = 0.90


def _openvino(results: dict[str, Any]) -> dict[str, Any]:
    return ((results.get("ceiling") or {}).get("engines") or {}).get("openvino") or {}


def agreement_of(results: dict[str, Any], engine: str, precision: str) -> float | None:
    """Share of torch fp32's labels kept by ``engine`` at ``precision`` (1.0 for torch fp32 itself)."""
    if engine == "torch" and precision == "fp32":
        return 1.0
    source = (results.get("ceiling") or {}) if engine == "torch" else _openvino(results)
    item = (source.get("agreement") or {}).get(precision)
    return None if item is None else item["same_label_share"]


def _best_ceiling(results: dict[str, Any], engine: str, precision: str) -> dict[str, Any] | None:
    source = (results.get("ceiling") or {}) if engine == "torch" else _openvino(results)
    layouts = [
        layout
        for layout in source.get("layouts", [])
        if layout.get("precision") == precision and layout.get("items_per_s")
    ]
    return max(layouts, key=lambda layout: layout["items_per_s"], default=None)


def engine_lines(results: dict[str, Any]) -> list[str]:
    """OpenVINO's ceiling, conversions and agreement (empty when it was not measured)."""
    openvino = _openvino(results)
    if not openvino:
        return []
    lines = ["### OpenVINO: the classifier alone (sorted batches of 32), conversions, agreement", ""]
    lines += table(
        [
            "precision",
            "layout",
            "items/s (warm)",
            "items/s (cold)",
            "CPU ms per item",
            "runs as",
            "pinned cores",
            "peak RSS per process (MB)",
        ],
        [
            [
                layout["precision"],
                f"{layout['processes']} × {layout['threads']} thread(s)",
                number(layout["items_per_s"]),
                number(layout["cold_items_per_s"]),
                number(layout["cpu_ms_per_item"], 2),
                str((layout.get("engine_facts") or {}).get("inference_precision", "?")),
                str(layout.get("pinned")),
                number(layout["peak_rss_mb"], 0),
            ]
            for layout in openvino.get("layouts", [])
        ],
    )
    lines.append("")
    builds = openvino.get("builds") or {}
    if builds:
        lines += table(
            ["precision", "conversion (s)", "calibration", "size (MB)", "builder peak RSS (MB)"],
            [
                [
                    precision,
                    number(build.get("conversion_seconds")),
                    str(build.get("calibration") or "–"),
                    number(build.get("size_mb"), 0),
                    number(build.get("peak_rss_mb"), 0),
                ]
                for precision, build in builds.items()
            ],
        )
        lines.append("")
    agreement = openvino.get("agreement") or {}
    if agreement:
        lines += table(
            [
                "precision",
                "same label as torch fp32",
                "max |Δ probability|",
                "largest fp32 top-2 margin among disagreements",
            ],
            [
                [
                    precision,
                    f"{item['same_label_share'] * 100:.2f}% ({item['disagreements']} of {item['items']} differ)",
                    number(item.get("max_abs_probability_diff"), 4),
                    number(item.get("max_fp32_margin_where_disagreeing"), 4),
                ]
                for precision, item in agreement.items()
            ],
        )
        lines.append("")
    for error in openvino.get("errors", []):
        lines.append(f"- error: {error}")
    return lines


def engine_targets(results: dict[str, Any]) -> list[Target]:
    """The fastest engine with enough agreement end to end, and the OpenVINO pipeline's share of its ceiling."""
    found = []
    runs = [
        run
        for run in results.get("pipeline", [])
        if run.get("database") == "postgresql" and run.get("items_per_s")
    ]
    candidates = [
        run
        for run in runs
        if (agreement_of(results, run.get("engine", "torch"), run["precision"]) or 0.0) >= AGREEMENT_FLOOR
    ]
    name = (
        f"fastest engine with ≥ {AGREEMENT_FLOOR:.0%} agreement ≥ {ENGINE_THROUGHPUT_TARGET:.0f} items/s end to end"
        " (PostgreSQL)"
    )
    best = max(candidates, key=lambda run: run["items_per_s"], default=None)
    if best is None:
        found.append(Target(name, "–", None, ""))
    else:
        rate = best["items_per_s"]
        found.append(
            Target(
                name,
                f"{number(rate)} items/s ({best.get('engine', 'torch')} {best['precision']}, W={best['workers']})",
                rate >= ENGINE_THROUGHPUT_TARGET,
                f"{rate - ENGINE_THROUGHPUT_TARGET:+.0f} items/s, {rate / ENGINE_THROUGHPUT_TARGET - 1:+.0%}",
            )
        )
    for run in runs:
        if run.get("engine", "torch") == "torch":
            continue
        ceiling = _best_ceiling(results, run["engine"], run["precision"])
        name = f"pipeline ≥ 90% of the ceiling, {run['engine']} {run['precision']}, PostgreSQL"
        if ceiling is None:
            found.append(Target(name, "–", None, ""))
            continue
        share = run["items_per_s"] / ceiling["items_per_s"]
        found.append(
            Target(
                name,
                f"{share:.0%} ({number(run['items_per_s'])} of {number(ceiling['items_per_s'])} items/s, "
                f"W={run['workers']} vs ceiling {ceiling['layout']})",
                share >= PIPELINE_SHARE_TARGET,
                f"{(share - PIPELINE_SHARE_TARGET) * 100:+.0f} points",
            )
        )
    return found
