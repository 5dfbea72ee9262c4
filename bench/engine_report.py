"""The engines' tables and targets in the BENCHMARKS.md section (bench.ceiling's ``engines`` figures and
the pipeline runs of each engine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.ceiling import best_layout, layout_for
from bench.markdown import number, table
from bench.targets import Target, one_model

#: items/s end to end for the fastest engine and precision with >= AGREEMENT_FLOOR label agreement.
ENGINE_THROUGHPUT_TARGET = 190.0
#: share of torch fp32's labels an engine and precision must keep to be a candidate for the default.
AGREEMENT_FLOOR = 0.99
#: share of its own ceiling the pipeline must reach.
PIPELINE_SHARE_TARGET = 0.90


def _openvino(results: dict[str, Any]) -> dict[str, Any]:
    return ((results.get("ceiling") or {}).get("engines") or {}).get("openvino") or {}


def agreement_of(results: dict[str, Any], engine: str, precision: str) -> float | None:
    """Share of torch fp32's labels kept by ``engine`` at ``precision`` (1.0 for torch fp32 itself):
    on the trained stand-in where it was measured, else (older runs) on the random model."""
    if engine == "torch" and precision == "fp32":
        return 1.0
    standin = _standin_item(results, engine, precision)
    if standin is not None:
        return standin["same_label_share"]
    source = (results.get("ceiling") or {}) if engine == "torch" else _openvino(results)
    item = (source.get("agreement") or {}).get(precision)
    return None if item is None else item["same_label_share"]


def _standin_item(results: dict[str, Any], engine: str, precision: str) -> dict[str, Any] | None:
    models = (results.get("agreement") or {}).get("models") or {}
    return (models.get("standin") or {}).get(f"{engine} {precision}")


def keeps_the_rule(results: dict[str, Any], engine: str, precision: str) -> bool:
    """True when ``engine`` ``precision`` keeps the default's promise on the trained stand-in (at most
    0.5 points of accuracy and 1% of labels against torch fp32); where no stand-in figure exists (an
    older run), the random model's ≥ 99% agreement."""
    if engine == "torch" and precision == "fp32":
        return True
    standin = _standin_item(results, engine, precision)
    if standin is not None:
        return bool(standin.get("passes_rule"))
    return (agreement_of(results, engine, precision) or 0.0) >= AGREEMENT_FLOOR


def agreement_lines(results: dict[str, Any]) -> list[str]:
    """The agreement tables: each setting on the trained stand-in beside the random model, and window merging."""
    agreement = results.get("agreement") or {}
    models = agreement.get("models") or {}
    if not models:
        return []
    training = agreement.get("standin_training") or {}
    rule = agreement.get("rule") or {}
    lines = [
        "### Agreement with torch fp32: trained stand-in beside random weights",
        "",
        f"Held-out headlines of the stand-in ({agreement['items']}, never trained on; labels "
        f"{agreement.get('held_out_labels')}). Stand-in: `{agreement.get('standin')}`, trained "
        f"{training.get('recipe', {}).get('epochs', '?')} epochs from random initialisation "
        f"({training.get('seconds', '?')} s), held-out accuracy {_share(training.get('held_out_accuracy_fp32'))} "
        f"(majority label {_share(training.get('majority_share'))}). Rule: at most "
        f"{rule.get('max_accuracy_loss_points')} points of accuracy and "
        f"{(1 - rule.get('min_same_labels', 0.99)) * 100:.0f}% of labels lost against torch fp32.",
        "",
    ]
    standin = models.get("standin") or {}
    random_ = models.get("random") or {}
    rows = []
    for setting in agreement.get("settings", []):
        item = standin.get(setting)
        other = random_.get(setting)
        rows.append(
            [
                setting,
                _same(item),
                _share(item and item["accuracy"]),
                "–" if item is None else f"{item['accuracy_change_points']:+.2f}",
                number(item and item.get("median_fp32_margin"), 3),
                number(item and item.get("max_fp32_margin_where_disagreeing"), 3),
                "–" if item is None else ("yes" if item.get("passes_rule") else "**no**"),
                _same(other),
                number(other and other.get("median_fp32_margin"), 4),
            ]
        )
    lines += table(
        [
            "setting",
            "stand-in: same label as fp32",
            "stand-in: accuracy",
            "Δ accuracy (points)",
            "stand-in: median fp32 top-2 margin",
            "largest fp32 margin among disagreements",
            "keeps the rule",
            "random weights: same label",
            "random weights: median margin",
        ],
        rows,
    )
    lines.append("")
    windows = agreement.get("windows") or {}
    if (windows.get("models") or {}).get("standin"):
        lines += [
            f"Window merging: {windows['posts']} long posts (held-out headlines of one label joined to "
            f"128+ tokens) read in windows of {windows['window_tokens']} tokens, merged, against one "
            "window of 512. The stand-in was trained on up to 64 tokens, so its one-window read of "
            "a long post leans on barely trained positions: the accuracies favour windows.",
            "",
        ]
        rows = []
        for setting, item in windows["models"]["standin"].items():
            other = (windows["models"].get("random") or {}).get(setting)
            rows.append(
                [
                    setting,
                    number(item.get("mean_windows"), 1),
                    _same(item),
                    _share(item["reference_accuracy"]),
                    _share(item["accuracy"]),
                    _same(other),
                ]
            )
        lines += table(
            [
                "setting",
                "windows per post",
                "stand-in: same label, merged windows vs one window",
                "stand-in: accuracy, one window",
                "stand-in: accuracy, merged windows",
                "random weights: same label",
            ],
            rows,
        )
        lines.append("")
    for error in agreement.get("errors", []):
        lines.append(f"- error: {error[:500]}")
    return lines


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def _same(item: dict[str, Any] | None) -> str:
    if item is None:
        return "–"
    return f"{item['same_label_share'] * 100:.2f}% ({item['disagreements']} of {item['items']} differ)"


def _ceiling_of(results: dict[str, Any], engine: str) -> dict[str, Any]:
    """The ceiling part's figures of ``engine`` (torch's at the top level, the others' under ``engines``)."""
    return (results.get("ceiling") or {}) if engine == "torch" else _openvino(results)


def _best_ceiling(results: dict[str, Any], engine: str, precision: str) -> dict[str, Any] | None:
    source = _ceiling_of(results, engine)
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
        if run.get("database") == "postgresql" and run.get("items_per_s") and one_model(run)
    ]
    candidates = [
        run for run in runs if keeps_the_rule(results, run.get("engine", "torch"), run["precision"])
    ]
    judged_on = (
        "the stand-in's" if (results.get("agreement") or {}).get("models") else f"≥ {AGREEMENT_FLOOR:.0%}"
    )
    name = (
        f"fastest engine keeping {judged_on} agreement rule ≥ {ENGINE_THROUGHPUT_TARGET:.0f} items/s end to end"
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


#: items/s the default setting must reach alone on long posts (128+ tokens).
LONG_POST_TARGET = 40.0


def _layout_table(
    layouts: list[dict[str, Any]], last_header: str, last: Callable[[dict[str, Any]], str]
) -> list[str]:
    """One row per layout: its speed warm and cold, its CPU an item, and ``last``."""
    return table(
        ["layout", "items/s (warm)", "items/s (cold)", "CPU ms per item", last_header],
        [
            [
                f"{layout['processes']} × {layout['threads']} thread(s)",
                number(layout["items_per_s"]),
                number(layout["cold_items_per_s"]),
                number(layout["cpu_ms_per_item"], 2),
                last(layout),
            ]
            for layout in layouts
        ],
    )


def long_post_lines(results: dict[str, Any]) -> list[str]:
    long_posts = results.get("long_posts") or {}
    if not long_posts.get("layouts"):
        return []
    lines = [
        f"### Long posts: the classifier alone, {long_posts['engine']} {long_posts['precision']} (the default here)",
        "",
        f"{long_posts['posts']} posts of consecutive headlines joined to 128+ tokens (median "
        f"{long_posts['tokens_median']}, longest {long_posts['tokens_max']} tokens with the special ones).",
        "",
    ]
    lines += _layout_table(
        long_posts["layouts"], "peak RSS per process (MB)", lambda layout: number(layout["peak_rss_mb"], 0)
    )
    lines.append("")
    return lines + [f"- error: {error[:300]}" for error in long_posts.get("errors", [])]


def long_post_targets(results: dict[str, Any]) -> list[Target]:
    long_posts = results.get("long_posts") or {}
    name = f"long posts (128+ tokens) ≥ {LONG_POST_TARGET:.0f} items/s, the default alone"
    best = max(long_posts.get("layouts") or [], key=lambda layout: layout["items_per_s"], default=None)
    if best is None:
        return [Target(name, "–", None, "")]
    rate = best["items_per_s"]
    return [
        Target(
            name,
            f"{number(rate)} items/s ({long_posts['engine']} {long_posts['precision']}, {best['layout']})",
            rate >= LONG_POST_TARGET,
            f"{rate - LONG_POST_TARGET:+.0f} items/s",
        )
    ]


def _default_runs(results: dict[str, Any], again: dict[str, Any]) -> list[dict[str, Any]]:
    """The default setting's one-model PostgreSQL pipeline runs."""
    return [
        run
        for run in results.get("pipeline", [])
        if run.get("database") == "postgresql"
        and run.get("items_per_s")
        and one_model(run)
        and run.get("engine", "torch") == again["engine"]
        and run["precision"] == again["precision"]
    ]


def ceiling_again_lines(results: dict[str, Any]) -> list[str]:
    """The default alone measured again right after its pipeline runs, and their shares of it."""
    again = results.get("ceiling_again") or {}
    if not again.get("layouts"):
        return [f"- ceiling again: error: {error[:300]}" for error in again.get("errors", [])]
    engine, precision = again["engine"], again["precision"]
    lines = [
        f"### The default alone again, right after its pipeline runs ({engine} {precision})",
        "",
        "The ceiling's texts and passes, measured next to the default's pipeline runs: the machine's "
        "speed can drift over the minutes between the ceiling part and the pipeline part.",
        "",
    ]
    ceiling_part = {"layouts": _ceiling_of(results, engine).get("layouts", [])}
    lines += _layout_table(
        again["layouts"],
        "the ceiling part's items/s",
        lambda layout: number(
            (layout_for(ceiling_part, precision, layout["processes"]) or {}).get("items_per_s")
        ),
    )
    best = best_layout(again, precision)
    rows = []
    for run in _default_runs(results, again):
        same = layout_for(again, precision, run["workers"])
        rows.append(
            [
                f"W={run['workers']} × {run['threads_per_worker']} thread(s)",
                number(run["items_per_s"]),
                f"{run['items_per_s'] / same['items_per_s']:.0%}" if same else "–",
                f"{run['items_per_s'] / best['items_per_s']:.0%} ({best['layout']})",
            ]
        )
    if rows:
        header = ["pipeline, PostgreSQL", "items/s", "% of this ceiling, same layout", "% of its best layout"]
        lines += ["", *table(header, rows)]
    lines.append("")
    return lines + [f"- error: {error[:300]}" for error in again.get("errors", [])]


def ceiling_again_targets(results: dict[str, Any]) -> list[Target]:
    """The default's best PostgreSQL run against the best layout of its ceiling measured right after."""
    again = results.get("ceiling_again") or {}
    if "engine" not in again:
        return []
    label = again["precision"] if again["engine"] == "torch" else f"{again['engine']} {again['precision']}"
    name = f"pipeline ≥ 90% of the ceiling measured right after it, {label}, PostgreSQL"
    run = max(_default_runs(results, again), key=lambda item: item["items_per_s"], default=None)
    best = best_layout({"layouts": again.get("layouts") or []}, again["precision"])
    if run is None or best is None:
        return [Target(name, "–", None, "")]
    share = run["items_per_s"] / best["items_per_s"]
    return [
        Target(
            name,
            f"{share:.0%} ({number(run['items_per_s'])} of {number(best['items_per_s'])} items/s, "
            f"W={run['workers']} vs ceiling {best['layout']})",
            share >= PIPELINE_SHARE_TARGET,
            f"{(share - PIPELINE_SHARE_TARGET) * 100:+.0f} points",
        )
    ]
