"""A worker's memory as it loads the model and reads its longest texts, without Redis or a database.

``python -m bench.load_memory --model DIR [--precision bf16] [--texts FILE.csv] [--items 64]`` runs, in
a fresh process, what a worker holds: its imports, ``FinbertClassifier.load``, then the ``--items``
longest texts classified at once (the largest activations the sample asks for). It prints the process's
peak RSS (VmHWM), RSS and its anonymous / file-backed split after each step, one JSON line each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PYTHON, REPO, child_env, load_texts, proc_status_mb
from tools.standin import DATA_CSV


def measure(model: str, precision: str, texts_csv: str, items: int) -> None:
    """In this process: each step, then its memory figures."""

    def report(step: str, seconds: float | None = None) -> None:
        figures = {name: round(value, 1) for name, value in proc_status_mb("self").items()}
        print(json.dumps({"step": step, "seconds": seconds, **figures}), flush=True)

    import jobs.classify  # noqa: F401 (what `rq worker -w workers.FinbertWorker` imports)
    import workers.worker  # noqa: F401
    from model.classifier import FinbertClassifier, configure_torch

    configure_torch(1)
    report("imports")
    started = time.perf_counter()
    classifier = FinbertClassifier.load(model, precision)
    report("loaded", round(time.perf_counter() - started, 2))
    longest = sorted(load_texts(Path(texts_csv)), key=len, reverse=True)[:items]
    started = time.perf_counter()
    classifier.classify(longest)
    report(f"classified the {len(longest)} longest texts", round(time.perf_counter() - started, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "int8"])
    parser.add_argument("--texts", type=Path, default=DATA_CSV)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measure(str(args.model), args.precision, str(args.texts), args.items)
        return 0
    command = [PYTHON, "-m", "bench.load_memory", "--child", "--model", str(args.model)]
    command += ["--precision", args.precision, "--texts", str(args.texts), "--items", str(args.items)]
    return subprocess.run(command, cwd=REPO, env=child_env(), check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
