"""The original plan's way: a fresh Python process per item that loads the model and classifies it.

Each process is timed from spawn to exit (interpreter start, imports, model load, one forward pass).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, child_env, log, stop_process

#: seconds one process may take.
ITEM_TIMEOUT = 300.0


def measure_original(model: Path, texts: list[str], precision: str, threads: int) -> dict[str, Any]:
    """Seconds per item, and items/s, for one process per text of ``texts``, run one after another."""
    seconds: list[float] = []
    parts: list[dict[str, Any]] = []
    for text in texts:
        started = time.perf_counter()
        process = subprocess.Popen(
            [PYTHON, "-m", "bench.one_shot", str(model), precision, str(threads), text],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=ITEM_TIMEOUT)
        finally:
            stop_process(process, timeout=5)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"one-shot classification failed:\n{err[-2000:]}")
        seconds.append(elapsed)
        parts.append(json.loads(out.strip().splitlines()[-1]))
        log(f"original way: one item in {elapsed:.2f}s")
    mean = sum(seconds) / len(seconds)
    return {
        "precision": precision,
        "threads": threads,
        "items": len(seconds),
        "seconds_per_item": mean,
        "items_per_s": 1 / mean,
        "items_per_min": 60 / mean,
        "all_seconds": seconds,
        "mean_import_seconds": sum(part["import_seconds"] for part in parts) / len(parts),
        "mean_load_seconds": sum(part["load_seconds"] for part in parts) / len(parts),
        "mean_classify_seconds": sum(part["classify_seconds"] for part in parts) / len(parts),
    }
