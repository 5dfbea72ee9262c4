"""Run the whole benchmark and record it.

python -m bench.run --model PATH|build:DIR --texts FILE.csv [--quick]

Parts, in order: ceiling (+ batch sizes, long posts), agreement (every engine and precision on the
trained stand-in beside the random model), pipeline runs (+ idle latency and worker memory, and the
default alone again right after its own runs: the machine's speed drifts between parts), the
original plan's way, the scale part (100,000 and 1,000,000 contents, no model), the price import
(1,000,000 minute bars) and the reactions of 100,000 posts end to end (issue 17; both on PostgreSQL).
Writes bench/results/<timestamp>.json and appends a section to BENCHMARKS.md. Every server and process it starts is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.agreement import measure_agreement
from bench.ceiling import (
    LAYOUTS,
    CeilingPlan,
    best_layout,
    measure_again,
    measure_ceiling,
    measure_long_posts,
)
from bench.common import (
    REPO,
    evenly_spaced,
    load_texts,
    log,
    machine,
    raise_on_sigterm,
    shielded_from_signals,
    write_json,
)
from bench.latency import measure_latency
from bench.model import ModelArgumentError, resolve_model, resolve_standin
from bench.original import measure_original
from bench.pipeline import deployment, measure_throughput
from bench.prices_import import measure_prices_import
from bench.reaction_sweep import measure_reaction_sweep
from bench.report import append_section, pipeline_shares, render_section, targets
from bench.scale import measure_scale
from config import DEFAULT_BATCH_SIZE, DEFAULT_ENGINE, DEFAULT_PRECISION, PRECISIONS, default_precision

RESULTS_DIR = REPO / "bench" / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
#: batch sizes compared at the default precision.
SWEEP_BATCH_SIZES = (1, 8, 16, 32, 64)
#: (full, --quick) sizes of each part.
PIPELINE_ITEMS = (None, 300)
CEILING_ITEMS = (None, 150)
SWEEP_ITEMS = (200, 100)
LATENCY_ITEMS = (50, 10)
ORIGINAL_ITEMS = (5, 3)
SCALE_SIZES = ((100_000, 1_000_000), (100_000,))
#: minute bars imported by the price import part.
PRICE_BARS = (1_000_000, 100_000)
#: posts and sessions of minute bars of the reaction part.
REACTION_POSTS = (100_000, 10_000)
REACTION_SESSIONS = (250, 120)
#: OpenVINO precisions measured beside torch's; bf16 too where the CPU computes in bf16 (elsewhere
#: OpenVINO runs it as f32).
OPENVINO_PRECISIONS = ("fp32", "int8") + (("bf16",) if DEFAULT_PRECISION == "bf16" else ())
#: the product's default here (FINBERT_ENGINE and FINBERT_PRECISION unset).
DEFAULT_SETTING = (DEFAULT_ENGINE, default_precision(engine=DEFAULT_ENGINE))
#: long posts (headlines joined to 128+ tokens) classified by the default setting alone (full, --quick).
LONG_POST_ITEMS = (200, 60)
#: 1-minute load average per core above which the report flags the figures as distorted.
BUSY_LOAD_PER_CORE = 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        help="a model folder, or build:DIR to build the FinBERT-shaped model (random weights) there once",
    )
    parser.add_argument("--texts", required=True, type=Path, help="CSV with a text column")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about 3 minutes")
    parser.add_argument("--limit", type=int, help="use only the first N texts (default: all; --quick: 300)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=[
            "ceiling",
            "agreement",
            "pipeline",
            "postgres",
            "latency",
            "original",
            "scale",
            "models",
            "prices",
            "reactions",
        ],
        help="leave a part out (repeatable); targets that need it are reported as not measured",
    )
    parser.add_argument(
        "--standin",
        type=Path,
        help="a trained stand-in folder (default: python -m tools.standin's, trained once into its cache)",
    )
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS_MD, help="where to append the section")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, databases)")
    return parser.parse_args(argv)


def measured_precisions(results: dict[str, Any]) -> tuple[str, ...]:
    """Torch precisions the ceiling measures: all of them, but bf16 only where the CPU computes in bf16
    (elsewhere torch emulates it at a sixth of fp32's speed, the default is fp32, and measuring it would
    take most of the run); what is left out is recorded."""
    if DEFAULT_PRECISION == "bf16":
        return PRECISIONS
    results["precisions_left_out"] = {
        "bf16": "this CPU has no bf16 instructions (AVX-512 BF16 or AMX): torch emulates bf16 at about a sixth "
        "of fp32's speed, so it is not measured here and is not the default"
    }
    return tuple(precision for precision in PRECISIONS if precision != "bf16")


def _guarded(results: dict[str, Any], what: str, action: Callable[[], Any]) -> Any:
    """Run one part; record its error instead of losing the rest of the run (Ctrl-C still stops all)."""
    try:
        return action()
    except Exception as error:
        log(f"{what} failed: {type(error).__name__}: {error}")
        results.setdefault("errors", []).append(f"{what}: {type(error).__name__}: {error}")
        return None


class Databases:
    """Fresh databases by name: SQLite files, or databases on one private PostgreSQL server."""

    def __init__(self, work_dir: Path, stack: contextlib.ExitStack) -> None:
        self.work_dir = work_dir
        self.stack = stack
        self._postgres: Any = None

    def sqlite(self, name: str) -> str:
        return f"sqlite:///{self.work_dir / name}.db"

    def postgres(self, name: str) -> str:
        if self._postgres is None:
            from tests.servers import PostgresServer

            server = PostgresServer(self.work_dir / "postgres")
            self.stack.callback(server.stop)
            log("starting PostgreSQL")
            server.start()
            self._postgres = server
        return self._postgres.create_database(name)

    def drop(self, database: str) -> Callable[[str], None]:
        if database == "postgresql":
            return lambda name: self._postgres.drop_database(name)
        return lambda name: Path(self.sqlite(name).removeprefix("sqlite:///")).unlink(missing_ok=True)

    def create(self, database: str) -> Callable[[str], str]:
        return self.postgres if database == "postgresql" else self.sqlite


#: the models each worker holds in the several-models runs.
MODELS_COMPARED = 3


def pipeline_plan(results: dict[str, Any], skip: list[str]) -> list[tuple[str, int, str]]:
    """(database, workers, precision) of the first pipeline runs; fp32 and others follow once W is known."""
    databases = ["sqlite"] + ([] if "postgres" in skip else ["postgresql"])
    return [(database, workers, results["default_precision"]) for database in databases for workers in (1, 2)]


def run_pipeline_part(
    results: dict[str, Any],
    args: argparse.Namespace,
    model: Path,
    texts: list[str],
    work_dir: Path,
    databases: Databases,
    plan: CeilingPlan | None = None,
) -> None:
    """The pipeline runs (and idle latency, worker memory); with the ceiling's ``plan``, the default
    alone again right after its own runs."""
    quick = 1 if args.quick else 0
    latency_texts = evenly_spaced(texts, LATENCY_ITEMS[quick])
    runs: list[dict[str, Any]] = results.setdefault("pipeline", [])

    def one_run(
        database: str,
        workers: int,
        precision: str,
        with_latency: bool,
        engine: str = "torch",
        models: int = 1,
    ) -> None:
        label = f"{database}-w{workers}-{precision}" + ("" if engine == "torch" else f"-{engine}")
        label += f"-{models}models" if models > 1 else ""
        log(f"pipeline: {label}, {len(texts)} items")
        run: dict[str, Any] = {
            "label": label,
            "database": database,
            "workers": workers,
            "precision": precision,
            "engine": engine,
            "models": models,
        }
        try:
            with deployment(
                label, database, databases.create(database), databases.drop(database), texts, model,
                precision, workers, work_dir, engine, work_dir / "engines", models,
            ) as setup:  # fmt: skip
                run.update(measure_throughput(setup))
                log(f"pipeline: {label}: {run['items_per_s']:.1f} items/s")
                if with_latency:
                    log(f"latency: {label}, {len(latency_texts)} items")
                    latency = _guarded(
                        results, f"latency {label}", lambda: measure_latency(setup, latency_texts, work_dir)
                    )
                    entry = latency or {"database": database, "precision": precision, "error": True}
                    if engine != "torch":
                        entry["precision"] = f"{engine} {precision}"
                    results.setdefault("latency", []).append(entry)
        except Exception as error:
            log(f"pipeline {label} failed: {type(error).__name__}: {error}")
            run["error"] = f"{type(error).__name__}: {str(error)[-1500:]}"
        runs.append(run)

    for database, workers, precision in pipeline_plan(results, args.skip):
        one_run(database, workers, precision, workers == 1 and "latency" not in args.skip)
    if "postgres" in args.skip:
        return
    default_engine, default_precision_ = DEFAULT_SETTING
    if default_engine != "torch":  # the product's default here: W=1 (with idle latency) and W=2
        for workers in (1, 2):
            one_run(
                "postgresql",
                workers,
                default_precision_,
                workers == 1 and "latency" not in args.skip,
                engine=default_engine,
            )
    if plan is not None:  # the default alone again, next to its pipeline runs (the ceiling part drifts)
        results["ceiling_again"] = _guarded(
            results, "ceiling again", lambda: measure_again(plan, default_engine, default_precision_)
        )
    done = [run for run in runs if run["database"] == "postgresql" and "items_per_s" in run]
    best_workers = max(done, key=lambda run: run["items_per_s"])["workers"] if done else LAYOUTS[0][0]
    results["best_workers"] = best_workers
    # fp32 with the faster W, and the fastest precision of the ceiling when it is neither.
    ceiling = results.get("ceiling") or {"layouts": []}
    rates = {p: (best_layout(ceiling, p) or {}).get("items_per_s", 0.0) for p in PRECISIONS}
    fastest = max(rates, key=rates.__getitem__) if any(rates.values()) else DEFAULT_PRECISION
    results["fastest_ceiling_precision"] = fastest
    for precision in dict.fromkeys(["fp32", fastest]):
        if precision != results["default_precision"]:
            one_run("postgresql", best_workers, precision, False)
    # Several models (issue 16): the default with three FinBERT-sized models in every worker, on W=1 and
    # the faster W (their memory is per worker).
    if "models" not in args.skip:
        for workers in dict.fromkeys([1, best_workers]):
            one_run("postgresql", workers, results["default_precision"], False, models=MODELS_COMPARED)
    # The fastest OpenVINO precision of the ceiling, with its best layout's worker count.
    openvino = ((results.get("ceiling") or {}).get("engines") or {}).get("openvino") or {}
    measured = [layout for layout in openvino.get("layouts", []) if layout.get("items_per_s")]
    if measured:
        best = max(measured, key=lambda layout: layout["items_per_s"])
        results["fastest_openvino"] = {"precision": best["precision"], "layout": best["layout"]}
        processes = int(best["processes"])
        if ("openvino", best["precision"]) != DEFAULT_SETTING:  # else measured above
            one_run("postgresql", processes, best["precision"], False, engine="openvino")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    started = time.perf_counter()
    quick = 1 if args.quick else 0
    limit = args.limit or PIPELINE_ITEMS[quick]
    texts = load_texts(args.texts, limit)
    if not texts:
        print(f"{args.texts}: no texts", file=sys.stderr)
        return 2
    try:
        model, built = resolve_model(args.model)
    except ModelArgumentError as error:
        print(error, file=sys.stderr)
        return 2
    host = machine()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.run " + " ".join(shlex.quote(arg) for arg in argv),
        "quick": args.quick,
        "model": str(model),
        "model_built_now": built,
        "texts_file": str(args.texts),
        "items": len(texts),
        "default_precision": DEFAULT_PRECISION,
        "default_setting": {"engine": DEFAULT_SETTING[0], "precision": DEFAULT_SETTING[1]},
        "batch_size": DEFAULT_BATCH_SIZE,
        "machine": {**dataclasses.asdict(host), "accelerators": host.accelerators},
        "load_start": os.getloadavg()[0],
        "busy_load": BUSY_LOAD_PER_CORE * host.cores,
    }
    work_dir = Path(tempfile.mkdtemp(prefix="volfefe-bench-"))
    work_dir.chmod(0o755)  # PostgreSQL runs as the postgres user and must enter it
    log(f"{len(texts)} texts, model {model}, working in {work_dir}")
    stack = contextlib.ExitStack()
    plan: CeilingPlan | None = None
    try:
        if "ceiling" not in args.skip:
            plan = CeilingPlan(
                model=model,
                texts=evenly_spaced(texts, CEILING_ITEMS[quick] or len(texts)),
                subset=evenly_spaced(texts, SWEEP_ITEMS[quick]),
                precisions=measured_precisions(results),
                default_precision=DEFAULT_PRECISION,
                openvino_precisions=OPENVINO_PRECISIONS,
                engine_cache=work_dir / "engines",
                batch_size=DEFAULT_BATCH_SIZE,
                sweep_batch_sizes=SWEEP_BATCH_SIZES,
                work_dir=work_dir / "ceiling",
            )
            results["ceiling"] = _guarded(results, "ceiling", lambda: measure_ceiling(plan))
            layouts = (results["ceiling"] or {}).get("layouts") or [{}]
            results["torch_cpu_capability"] = layouts[0].get("cpu_capability", "?")
            results["long_posts"] = _guarded(
                results,
                "long posts",
                lambda: measure_long_posts(plan, texts, LONG_POST_ITEMS[quick], *DEFAULT_SETTING),
            )
        if "agreement" not in args.skip:
            results["agreement"] = _guarded(
                results,
                "agreement",
                lambda: measure_agreement(
                    args.standin or resolve_standin(),
                    model,
                    work_dir / "agreement",
                    work_dir / "engines",
                    quick=args.quick,
                    default=DEFAULT_SETTING,
                ),
            )
        if "pipeline" not in args.skip:
            run_pipeline_part(results, args, model, texts, work_dir, Databases(work_dir, stack), plan)
        if "original" not in args.skip:
            original_texts = evenly_spaced(texts, ORIGINAL_ITEMS[quick])
            log(f"original way: {len(original_texts)} items, one process each")
            results["original"] = _guarded(
                results, "original way", lambda: measure_original(model, original_texts, "fp32", host.cores)
            ) or {"error": "failed"}
        if "scale" not in args.skip and "postgres" not in args.skip:
            sizes = SCALE_SIZES[quick]
            log(f"scale: {', '.join(f'{size:,}' for size in sizes)} contents on PostgreSQL")
            results["scale"] = _guarded(
                results, "scale", lambda: measure_scale(model, work_dir / "scale", sizes)
            )
        if "prices" not in args.skip:
            backends = ["sqlite"] if "postgres" in args.skip else ["postgresql"]
            log(f"prices: import of {PRICE_BARS[quick]:,} minute bars on {backends[0]}")
            results["prices"] = _guarded(
                results,
                "prices",
                lambda: measure_prices_import(work_dir / "prices", PRICE_BARS[quick], backends=backends),
            )
        if "reactions" not in args.skip and "postgres" not in args.skip:
            results["reactions"] = _guarded(
                results,
                "reactions",
                lambda: measure_reaction_sweep(
                    model, work_dir / "reactions", REACTION_POSTS[quick], REACTION_SESSIONS[quick]
                ),
            )
    except KeyboardInterrupt:
        log("interrupted: stopping every server and process started")
        return 130
    finally:
        with shielded_from_signals():
            stack.close()
            if args.keep:
                log(f"kept {work_dir}")
            else:
                shutil.rmtree(work_dir, ignore_errors=True)
    results["load_end"] = os.getloadavg()[0]
    results["total_seconds"] = time.perf_counter() - started
    pipeline_shares(results)
    results["targets"] = [dataclasses.asdict(item) for item in targets(results)]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.results_dir / f"{stamp}.json"
    write_json(json_path, results)
    section = render_section(results)
    append_section(args.markdown, section)
    print(section)
    log(f"wrote {json_path} and appended to {args.markdown} in {results['total_seconds'] / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    raise_on_sigterm()
    return run(parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
