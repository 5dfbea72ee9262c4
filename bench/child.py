"""One classifier process of the ceiling measurement: ``python -m bench.child SPEC.json OUT.json``.

The spec's ``engine`` (default ``torch``) picks the engine; ``openvino`` loads the conversion cached in
``engine_cache`` (build it first with ``python -m bench.child --build SPEC.json OUT.json``, which times
the conversion and its peak memory), and with ``pin`` (``{"processes": N, "lock_dir": DIR}``) the
process claims its own cores first, as a worker does (``model.pinning``).

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
    engine = spec.get("engine", "torch")
    pinned = None
    if spec.get("pin"):
        from model.pinning import claim_cores

        pinned = claim_cores(int(spec["pin"]["processes"]), Path(spec["pin"]["lock_dir"]))
    imported = time.perf_counter()
    classifier = FinbertClassifier.load(
        spec["model"],
        spec["precision"],
        batch_size=32,
        engine=engine,
        engine_cache=Path(spec["engine_cache"]) if spec.get("engine_cache") else None,
        threads=int(spec["threads"]),
    )
    loaded = time.perf_counter()
    after_load = proc_status_mb("self")
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
                        "scores": [result.raw_scores[label] for label in classifier.labels],
                    }
                )
    return {
        "engine": engine,
        "engine_facts": _engine_facts(classifier),
        "pinned_cores": pinned,
        "rss_after_load_mb": after_load.get("rss_mb"),
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


def _engine_facts(classifier: Any) -> dict[str, Any]:
    """What the engine really runs (OpenVINO falls back to f32 where the CPU has no bf16)."""
    compiled = getattr(classifier.engine, "compiled", None)
    if compiled is None:
        return {}
    return {
        "inference_precision": classifier.engine.inference_precision,
        "inference_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
    }


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """Build (or find cached) the conversion for ``spec``: seconds, whether it converted now, peak RSS."""
    from model import openvino_engine

    started = time.perf_counter()
    result = openvino_engine.build(
        spec["model"], spec["precision"], int(spec.get("max_length", 512)), Path(spec["engine_cache"])
    )
    return {
        "engine": spec.get("engine", "openvino"),
        "precision": spec["precision"],
        "folder": str(result.folder),
        "converted_now": result.converted,
        "seconds_now": time.perf_counter() - started,
        "conversion_seconds": result.record["seconds"],
        "calibration": result.record.get("calibration"),
        "size_mb": sum(path.stat().st_size for path in result.folder.iterdir()) / 2**20,
        **proc_status_mb("self"),
    }


def main() -> None:
    arguments = sys.argv[1:]
    building = arguments[:1] == ["--build"]
    spec_path, out_path = (Path(item) for item in arguments[building:][:2])
    spec = json.loads(spec_path.read_text())
    result = build(spec) if building else run(spec)
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
