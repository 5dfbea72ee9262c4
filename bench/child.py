"""One classifier process of the ceiling measurement: ``python -m bench.child SPEC.json OUT.json``.

It loads the model through the product's code (``FinbertClassifier.load``), warms it up, prints
``READY`` and waits for a line on standard input before each pass (so that the processes of a
layout run each pass together), and runs the planned passes (a batch size over all its texts or over a subset) and writes timings, predictions and memory
to OUT.json. Only torch work happens between the two clock readings of a pass.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import proc_status_mb

READY = "READY"


def run(spec: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    import torch

    from model.classifier import FinbertClassifier, configure_torch
    from model.visible_text import visible_text

    configure_torch(int(spec["threads"]))
    imported = time.perf_counter()
    classifier = FinbertClassifier.load(spec["model"], spec["precision"], batch_size=32)
    loaded = time.perf_counter()
    # What the worker classifies is the visible text of a post, so the ceiling does the same work.
    texts = [visible_text(text) for text in spec["texts"]]
    classifier.classify(texts[:64])  # first calls allocate and pick kernels

    sets = {"all": texts, "subset": [visible_text(text) for text in spec.get("subset", [])]}
    passes = []
    predictions: list[dict[str, float | str]] = []
    for planned in spec["passes"]:
        chosen = sets[planned["set"]]
        classifier.batch_size = int(planned["batch_size"])
        print(READY, flush=True)  # a barrier before each pass: processes of one layout run together
        sys.stdin.readline()
        start_wall = time.time()
        start_cpu = time.process_time()  # every thread of this process
        start = time.perf_counter()
        results = classifier.classify(chosen)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - start_cpu
        passes.append(
            {
                **planned,
                "items": len(chosen),
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "start": start_wall,
                "end": start_wall + seconds,
            }
        )
        if spec.get("predictions") and planned["set"] == "all" and not predictions:
            for result in results:
                scores = sorted(result.raw_scores.values(), reverse=True)
                predictions.append(
                    {
                        "label": result.sentiment,
                        "confidence": result.confidence,
                        "margin": scores[0] - scores[1] if len(scores) > 1 else 1.0,
                    }
                )
    return {
        "precision": spec["precision"],
        "threads": spec["threads"],
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "import_seconds": imported - started,
        "load_seconds": loaded - imported,
        "passes": passes,
        "predictions": predictions,
        **proc_status_mb("self"),
    }


def main() -> None:
    spec_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    result = run(json.loads(spec_path.read_text()))
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
