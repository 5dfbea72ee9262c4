"""The ceiling: the classifier alone, warm, on all the texts in length-sorted batches.

For each precision: one process with 2 threads, and 2 processes with 1 thread each that classify
half of the texts each (interleaved halves, started together; the combined rate is all texts over
the time from the first start to the last end). Every pass runs twice on the same texts: the first
("cold") also pays for creating kernels for each new tensor shape; the second ("warm", what a
long-running worker gets) is the ceiling. For the default precision the single process also runs a
batch-size sweep on a subset, and every single-process run returns its predictions for the
agreement table.

With ``openvino_precisions`` the same is measured for the OpenVINO engine (``measure_openvino``):
each conversion is built first in a process of its own (timed; cached in ``engine_cache``), then the
layouts 1x2 and 2x1 with each process pinned to its own core, as workers pin themselves.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import READY
from bench.common import PYTHON, REPO, child_env, log, shielded_from_signals, stop_process

#: seconds a classifier process may take in all (import, load, every pass).
CHILD_TIMEOUT = 1800.0
#: layouts on a 2-core machine: (processes, threads per process).
LAYOUTS = ((1, 2), (2, 1))


def layout_name(processes: int, threads: int) -> str:
    return f"{processes}x{threads}"


@dataclass(frozen=True)
class CeilingPlan:
    model: Path
    texts: list[str]
    subset: list[str]
    precisions: tuple[str, ...]
    default_precision: str
    batch_size: int
    sweep_batch_sizes: tuple[int, ...]
    work_dir: Path
    #: OpenVINO precisions to measure beside torch's (empty: torch only).
    openvino_precisions: tuple[str, ...] = ()
    #: where conversions are cached (None: the product's default, ~/.cache/volfefe/engines).
    engine_cache: Path | None = None


def run_children(specs: Sequence[dict[str, Any]], work_dir: Path, tag: str) -> list[dict[str, Any]]:
    """Start one child per spec (same passes each); release every pass in all of them together."""
    work_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[str]] = []
    outputs: list[Path] = []
    logs: list[Path] = []
    try:
        for index, spec in enumerate(specs):
            spec_path = work_dir / f"{tag}-{index}.spec.json"
            spec_path.write_text(json.dumps(spec))
            outputs.append(work_dir / f"{tag}-{index}.out.json")
            logs.append(work_dir / f"{tag}-{index}.log")
            with logs[-1].open("w") as log_file:
                processes.append(
                    subprocess.Popen(
                        [PYTHON, "-m", "bench.child", str(spec_path), str(outputs[-1])],
                        cwd=REPO,
                        env=child_env(),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log_file,
                        text=True,
                        start_new_session=True,
                    )
                )
        for _ in specs[0]["passes"]:
            for process, log_path in zip(processes, logs, strict=True):
                assert process.stdout is not None
                while (line := process.stdout.readline()) and line.strip() != READY:
                    pass
                if not line:
                    raise RuntimeError(f"classifier process failed:\n{log_path.read_text()[-2000:]}")
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
        for process, log_path in zip(processes, logs, strict=True):
            if process.wait(CHILD_TIMEOUT) != 0:
                raise RuntimeError(f"classifier process failed:\n{log_path.read_text()[-2000:]}")
        return [json.loads(path.read_text()) for path in outputs]
    finally:
        with shielded_from_signals():
            for process in processes:
                stop_process(process, timeout=5)


def _rate(items: int, seconds: float) -> float:
    return items / seconds if seconds > 0 else 0.0


def measure_layout(
    plan: CeilingPlan, precision: str, processes: int, threads: int, engine: str = "torch"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Classify all texts at ``precision`` with ``processes`` x ``threads`` in ``engine``; the figures
    and raw results. OpenVINO processes of a multi-process layout each pin themselves to their cores."""
    planned = [{"batch_size": plan.batch_size, "set": "all"}]
    if processes == 1 and precision == plan.default_precision and engine == "torch":
        planned += [{"batch_size": size, "set": "subset"} for size in plan.sweep_batch_sizes]
    # Each pass runs twice on the same texts: the first (cold) also creates the kernels for each new
    # tensor shape, the second (warm) is what a long-running worker gets, and is the ceiling.
    passes = [{**item, "round": round_} for item in planned for round_ in ("cold", "warm")]
    specs = [
        {
            "model": str(plan.model),
            "precision": precision,
            "threads": threads,
            "texts": plan.texts[index::processes],
            "subset": plan.subset,
            "passes": passes,
            "predictions": processes == 1,
            "engine": engine,
            "engine_cache": str(plan.engine_cache) if plan.engine_cache else None,
            "pin": {"processes": processes, "lock_dir": str(plan.work_dir / "core-locks")}
            if engine == "openvino" and processes > 1
            else None,
        }
        for index in range(processes)
    ]
    name = layout_name(processes, threads)
    log(
        f"ceiling: {engine} {precision}, {processes} process(es) x {threads} thread(s), {len(plan.texts)} texts"
    )
    results = run_children(specs, plan.work_dir, f"ceiling-{engine}-{precision}-{name}")

    def combined(round_: str) -> tuple[int, float]:
        """All processes' items over the time from the first start to the last end of that pass."""
        mains = [
            next(item for item in result["passes"] if item["set"] == "all" and item["round"] == round_)
            for result in results
        ]
        items = sum(item["items"] for item in mains)
        cpu = sum(item["cpu_seconds"] for item in mains)
        return items, max(item["end"] for item in mains) - min(item["start"] for item in mains), cpu

    items, seconds, cpu_seconds = combined("warm")
    _cold_items, cold_seconds, _cold_cpu = combined("cold")
    figures = {
        "engine": engine,
        "precision": precision,
        "layout": name,
        "pinned": [result.get("pinned_cores") for result in results] if engine != "torch" else None,
        "engine_facts": results[0].get("engine_facts", {}),
        "rss_after_load_mb": max(result.get("rss_after_load_mb") or 0.0 for result in results),
        "processes": processes,
        "threads": threads,
        "batch_size": plan.batch_size,
        "items": items,
        "seconds": seconds,
        "items_per_s": _rate(items, seconds),
        # CPU of all the layout's threads per item: compare with the pipeline workers' CPU per item.
        "cpu_ms_per_item": cpu_seconds * 1000 / items if items else 0.0,
        "cold_seconds": cold_seconds,
        "cold_items_per_s": _rate(items, cold_seconds),
        "load_seconds": max(result["load_seconds"] for result in results),
        "import_seconds": max(result["import_seconds"] for result in results),
        "peak_rss_mb": max(result.get("peak_rss_mb", 0.0) for result in results),
        "cpu_capability": results[0]["cpu_capability"],
        "torch": results[0]["torch"],
    }
    return figures, results


def batch_sweep(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Items/s per batch size (warm, and cold) from a single process's subset passes."""
    subset = [item for item in result["passes"] if item["set"] == "subset"]
    cold = {item["batch_size"]: item for item in subset if item["round"] == "cold"}
    return [
        {
            "batch_size": item["batch_size"],
            "items": item["items"],
            "seconds": item["seconds"],
            "items_per_s": _rate(item["items"], item["seconds"]),
            "cold_items_per_s": _rate(item["items"], cold[item["batch_size"]]["seconds"]),
        }
        for item in subset
        if item["round"] == "warm"
    ]


def agreement(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """How often ``other`` picks fp32's label, and how far its confidence strays."""
    pairs = list(zip(reference, other, strict=True))
    disagreeing = [ref for ref, item in pairs if ref["label"] != item["label"]]
    return {
        "items": len(pairs),
        "same_label_share": 1 - len(disagreeing) / len(pairs) if pairs else 0.0,
        "disagreements": len(disagreeing),
        "max_abs_confidence_diff": max(
            (abs(ref["confidence"] - item["confidence"]) for ref, item in pairs), default=0.0
        ),
        "max_fp32_margin_where_disagreeing": max((ref["margin"] for ref in disagreeing), default=None),
        # every label's probability (predictions written since the engines' comparison carry them)
        "max_abs_probability_diff": max(
            (
                max(abs(a - b) for a, b in zip(ref["scores"], item["scores"], strict=True))
                for ref, item in pairs
                if "scores" in ref and "scores" in item
            ),
            default=None,
        ),
    }


def measure_ceiling(plan: CeilingPlan) -> dict[str, Any]:
    """Every precision and layout, the batch-size sweep, and agreement with fp32."""
    layouts: list[dict[str, Any]] = []
    predictions: dict[str, list[dict[str, Any]]] = {}
    sweep: list[dict[str, Any]] = []
    errors: list[str] = []
    for precision in plan.precisions:
        for processes, threads in LAYOUTS:
            try:
                figures, results = measure_layout(plan, precision, processes, threads)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                errors.append(f"{precision} {layout_name(processes, threads)}: {error}")
                log(f"ceiling: {precision} {layout_name(processes, threads)} failed: {error}")
                continue
            layouts.append(figures)
            log(f"ceiling: {precision} {figures['layout']}: {figures['items_per_s']:.1f} items/s")
            if processes == 1:
                predictions[precision] = results[0]["predictions"]
                if precision == plan.default_precision:
                    sweep = batch_sweep(results[0])
    agreements = {
        precision: agreement(predictions["fp32"], predictions[precision])
        for precision in predictions
        if precision != "fp32" and "fp32" in predictions
    }
    engines = {}
    if plan.openvino_precisions:
        engines["openvino"] = measure_openvino(plan, plan.openvino_precisions, predictions.get("fp32"))
    return {
        "engines": engines,
        "layouts": layouts,
        "batch_sweep": {
            "precision": plan.default_precision,
            "layout": layout_name(*LAYOUTS[0]),
            "subset_items": len(plan.subset),
            "results": sweep,
        },
        "agreement": agreements,
        "errors": errors,
    }


def build_conversion(plan: CeilingPlan, precision: str, engine: str = "openvino") -> dict[str, Any]:
    """Build (or find cached) ``engine``'s conversion at ``precision`` in a process of its own: its
    seconds (``conversion_seconds`` from the build record, ``seconds_now`` for this call), whether it
    converted now, its size and the builder's peak RSS."""
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    spec_path = plan.work_dir / f"build-{engine}-{precision}.spec.json"
    out_path = plan.work_dir / f"build-{engine}-{precision}.out.json"
    log_path = plan.work_dir / f"build-{engine}-{precision}.log"
    from config import DEFAULT_ENGINE_CACHE

    cache = plan.engine_cache or Path(DEFAULT_ENGINE_CACHE).expanduser()
    spec_path.write_text(
        json.dumps(
            {"model": str(plan.model), "precision": precision, "engine": engine, "engine_cache": str(cache)}
        )
    )
    log(f"ceiling: building the {engine} {precision} conversion (cached in {cache})")
    with log_path.open("w") as log_file:
        result = subprocess.run(
            [PYTHON, "-m", "bench.child", "--build", str(spec_path), str(out_path)],
            cwd=REPO,
            env=child_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"building the {engine} {precision} conversion failed:\n{log_path.read_text()[-2000:]}"
        )
    return json.loads(out_path.read_text())


def measure_openvino(
    plan: CeilingPlan, precisions: Sequence[str], reference: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """OpenVINO at each precision: its conversion, both layouts (2x1 pinned), agreement with torch fp32.

    Returns ``{"engine": "openvino", "builds": {precision: build_conversion(...)}, "layouts": [figures
    as measure_layout's, with "engine": "openvino"], "agreement": {precision: agreement(...)},
    "errors": [str]}``; ``reference`` is torch fp32's 1x2 predictions (None: no agreement figures).
    """
    builds: dict[str, dict[str, Any]] = {}
    layouts: list[dict[str, Any]] = []
    agreements: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for precision in precisions:
        try:
            builds[precision] = build_conversion(plan, precision)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
            errors.append(f"openvino {precision} build: {error}")
            log(f"ceiling: openvino {precision} build failed: {error}")
            continue
        for processes, threads in LAYOUTS:
            try:
                figures, results = measure_layout(plan, precision, processes, threads, engine="openvino")
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                errors.append(f"openvino {precision} {layout_name(processes, threads)}: {error}")
                log(f"ceiling: openvino {precision} {layout_name(processes, threads)} failed: {error}")
                continue
            layouts.append(figures)
            log(f"ceiling: openvino {precision} {figures['layout']}: {figures['items_per_s']:.1f} items/s")
            if processes == 1 and reference is not None:
                agreements[precision] = agreement(reference, results[0]["predictions"])
    return {
        "engine": "openvino",
        "builds": builds,
        "layouts": layouts,
        "agreement": agreements,
        "errors": errors,
    }


def best_layout(ceiling: dict[str, Any], precision: str) -> dict[str, Any] | None:
    """The fastest layout measured at ``precision``."""
    candidates = [item for item in ceiling["layouts"] if item["precision"] == precision]
    return max(candidates, key=lambda item: item["items_per_s"], default=None)


def layout_for(ceiling: dict[str, Any], precision: str, processes: int) -> dict[str, Any] | None:
    return next(
        (
            item
            for item in ceiling["layouts"]
            if item["precision"] == precision and item["processes"] == processes
        ),
        None,
    )


#: tokens a long post has at least (issue 18: "long posts, 128+ tokens").
LONG_POST_TOKENS = 128


def join_into_long_posts(texts: Sequence[str], tokenizer: Any, count: int) -> list[str]:
    """``count`` posts of at least LONG_POST_TOKENS tokens, each joining consecutive ``texts`` (cycling)."""
    from model.visible_text import visible_text

    posts: list[str] = []
    position = 0
    while len(posts) < count and texts:
        parts: list[str] = []
        while len(tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"]) < LONG_POST_TOKENS:
            parts.append(visible_text(texts[position % len(texts)]))
            position += 1
        posts.append(" ".join(parts))
    return posts


def _every_layout(
    plan: CeilingPlan, engine: str, precision: str, part: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """``plan``'s texts at ``engine`` ``precision`` in every layout: the figures, and one line per
    layout that failed."""
    layouts = []
    errors = []
    for processes, threads in LAYOUTS:
        try:
            figures, _ = measure_layout(plan, precision, processes, threads, engine=engine)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
            errors.append(f"{engine} {precision} {layout_name(processes, threads)}: {error}")
            continue
        log(f"{part}: {engine} {precision} {figures['layout']}: {figures['items_per_s']:.1f} items/s")
        layouts.append(figures)
    return layouts, errors


def measure_long_posts(
    plan: CeilingPlan, texts: Sequence[str], count: int, engine: str, precision: str
) -> dict[str, Any]:
    """The classifier alone on long posts at ``engine`` ``precision``, both layouts (what a worker's
    forward passes cost on posts of 128+ tokens, where attention grows with length)."""
    import dataclasses

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(plan.model))
    posts = join_into_long_posts(texts, tokenizer, count)
    lengths = sorted(len(tokenizer(post)["input_ids"]) for post in posts)
    long_plan = dataclasses.replace(plan, texts=posts, work_dir=plan.work_dir / "long-posts")
    if engine != "torch":
        build_conversion(long_plan, precision, engine)
    layouts, errors = _every_layout(long_plan, engine, precision, "long posts")
    return {
        "engine": engine,
        "precision": precision,
        "posts": len(posts),
        "tokens_median": lengths[len(lengths) // 2] if lengths else None,
        "tokens_max": lengths[-1] if lengths else None,
        "layouts": layouts,
        "errors": errors,
    }


def measure_again(plan: CeilingPlan, engine: str, precision: str) -> dict[str, Any]:
    """``engine`` ``precision`` alone again in every layout, on the ceiling's texts and passes (no
    batch-size sweep). Taken right after that setting's pipeline runs: the machine's speed drifts over
    the minutes between the ceiling part and the pipeline part, and the pipeline's share of a ceiling
    measured next to it does not carry that drift."""
    import dataclasses

    again = dataclasses.replace(plan, sweep_batch_sizes=(), work_dir=plan.work_dir / "again")
    layouts, errors = _every_layout(again, engine, precision, "ceiling again")
    return {"engine": engine, "precision": precision, "layouts": layouts, "errors": errors}
