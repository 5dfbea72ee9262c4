"""Diagnostic: where a busy worker's time goes, sampled by py-spy during a pipeline run.

python -m bench.profile --model DIR [--engine openvino] [--precision int8] [--workers 2] [--items N]
python -m bench.profile --model DIR --engine torch --precision bf16 --latency 200

Not part of ``bench.run``. A fresh PostgreSQL database with the texts, a private Redis, W real
workers (``bench.pipeline.deployment``, as the pipeline part runs them); while the sweep's jobs are
classified, ``py-spy record`` samples worker 1 (every thread, idle included: ``--idle``), and the
samples are split by what the innermost frame of ours or of a library was doing: the model's forward
pass, tokenizing and windows, padding, the database (SQLAlchemy, psycopg), Redis (redis-py), RQ's own
bookkeeping, the audit record, JSON, waiting for jobs. Needs py-spy (``pip install py-spy``; not a
project dependency). The figures are shares of the sampled worker's wall time.

``--latency N``: one idle worker and N texts enqueued one at a time (``bench.latency``), sampled
without ``--idle``: the shares are of the time the worker was on the CPU while it ran single jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import evenly_spaced, load_texts, log, shielded_from_signals
from tools.standin import DATA_CSV

#: (category, substrings of a frame "function (file:line)" that put a sample in it), first match
#: from the innermost frame outwards wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("model forward (OpenVINO / torch)", ("openvino", "infer (", "torch/nn", "forward (model/engines")),
    ("padding (pad_batch)", ("pad_batch",)),
    ("tokenizing and windows", ("tokenizers", "tokenization_", "model/windows", "split_into_windows")),
    ("visible text", ("model/visible_text", "model/markup")),
    ("audit record", ("jobs/audit",)),
    ("database: psycopg", ("psycopg",)),
    ("database: SQLAlchemy ORM / core", ("sqlalchemy",)),
    ("Redis: redis-py (commands, replies, sockets)", ("redis/",)),
    ("RQ bookkeeping", ("rq/",)),
    ("JSON", ("json/",)),
    ("logging", ("logging/",)),
]


#: texts classified before a latency profile starts (the worker warm, as in bench.run).
WARM_ITEMS = 64

#: files of ours, as py-spy names them (relative to their folder on sys.path).
OUR_PACKAGES = ("jobs/", "workers/", "db/", "model/", "services/")


def _file(frame: str) -> str:
    return frame.rpartition(" (")[2].rstrip(")")


def categorize(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other Python (ours, the interpreter)"


def summarize(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    """Samples per category, per innermost function of ours, and in all, from py-spy's raw output."""
    categories: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack.startswith("<module>"):
            continue  # the main thread only (the others: pubsub listener, idle pools)
        samples = int(count)
        total += samples
        categories[categorize(stack)] += samples
        own = [frame for frame in stack.split(";") if _file(frame).startswith(OUR_PACKAGES)]
        steps = [frame for frame in own if _file(frame).startswith(("workers/worker.py", "jobs/classify.py"))]
        ours[steps[-1].split(" (")[0] + " > " + own[-1] if steps else "(outside the batch path)"] += samples
    return categories, ours, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--texts", type=Path, default=DATA_CSV)
    parser.add_argument("--engine", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=None, help="texts (default: all)")
    parser.add_argument("--engine-cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("profile-worker.txt"), help="py-spy's raw samples")
    parser.add_argument("--summarize", type=Path, help="only summarize a py-spy raw file written before")
    parser.add_argument(
        "--latency", type=int, metavar="N", help="one idle worker, N single items (CPU samples)"
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print_summary(args.summarize)
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("python -m bench.profile: error: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    from bench.latency import measure_latency
    from bench.pipeline import deployment, measure_throughput
    from bench.run import Databases

    texts = load_texts(args.texts)
    texts = evenly_spaced(texts, args.items) if args.items else texts
    workers = 1 if args.latency else args.workers
    work_dir = Path(tempfile.mkdtemp(prefix="volfefe-profile-"))
    work_dir.chmod(0o755)
    stack = contextlib.ExitStack()
    try:
        databases = Databases(work_dir, stack)
        with deployment(
            "profile", "postgresql", databases.create("postgresql"), databases.drop("postgresql"),
            texts[:WARM_ITEMS] if args.latency else texts, args.model, args.precision, workers, work_dir, args.engine,
            args.engine_cache or work_dir / "engines",
        ) as setup:  # fmt: skip
            if args.latency:
                measure_throughput(setup)  # warm: the worker's first batches, as bench.run runs latency
            sampler = subprocess.Popen(
                [py_spy, "record", "--pid", str(setup.workers[0].pid), "--format", "raw",
                 *([] if args.latency else ["--idle"]), "--rate", "250", "--output", str(args.out),
                 "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=(work_dir / "py-spy.log").open("w"),
            )  # fmt: skip
            try:
                if args.latency:
                    figures = measure_latency(setup, texts[WARM_ITEMS : WARM_ITEMS + args.latency], work_dir)
                else:
                    figures = measure_throughput(setup)
            finally:
                sampler.send_signal(signal.SIGINT)  # py-spy writes its samples on Ctrl-C
                sampler.wait(60)
            if not args.out.exists():
                print((work_dir / "py-spy.log").read_text()[-2000:], file=sys.stderr)
    finally:
        with shielded_from_signals():
            stack.close()
            shutil.rmtree(work_dir, ignore_errors=True)
    if args.latency:
        print(f"\n{figures}")
    else:
        log(f"{figures['items_per_s']:.1f} items/s ({args.engine} {args.precision}, W={workers}, PostgreSQL)")
        print(f"\n{figures['items']} items, {figures['items_per_s']:.1f} items/s")
    print_summary(args.out)
    return 0


def print_summary(raw: Path) -> None:
    categories, ours, total = summarize(raw)
    print(f"worker 1's main thread: {total} samples of wall time (idle included)\n")
    print("| where worker 1's time went | share |\n| --- | --- |")
    for name, count in categories.most_common():
        print(f"| {name} | {count / total:.1%} |")
    print("\n| batch step (worker.py / classify.py) > innermost frame of ours | share |\n| --- | --- |")
    for frame, count in ours.most_common(25):
        print(f"| `{frame}` | {count / total:.1%} |")


if __name__ == "__main__":
    sys.exit(main())
