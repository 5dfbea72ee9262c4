"""The original plan's way for one item: a fresh process loads the model and classifies one text.

``python -m bench.one_shot MODEL PRECISION THREADS TEXT`` prints one JSON line with its own timings.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    started = time.perf_counter()
    model, precision, threads, text = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    from model.classifier import FinbertClassifier, configure_torch
    from model.visible_text import visible_text

    configure_torch(threads)
    imported = time.perf_counter()
    classifier = FinbertClassifier.load(model, precision)
    loaded = time.perf_counter()
    (prediction,) = classifier.classify([visible_text(text)])
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "sentiment": prediction.sentiment,
                "import_seconds": imported - started,
                "load_seconds": loaded - imported,
                "classify_seconds": done - loaded,
            }
        )
    )


if __name__ == "__main__":
    main()
