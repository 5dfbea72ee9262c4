"""``volfefe classify``: one JSON result per line of standard input."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from config import Settings
from model.model_marks import has_random_weights
from model.visible_text import visible_text

#: the ``warning`` of every JSON line classified by a model with random weights.
RANDOM_WEIGHTS_NOTE = "model with random weights: meaningless labels"


def classify_lines(config: Settings, lines: TextIO, out: TextIO) -> int:
    """Print a JSON object per input line; a line with no text gets a JSON error. Exit status 1 if any.

    Results of a model with random weights carry ``"warning": RANDOM_WEIGHTS_NOTE``.
    """
    texts = [line.rstrip("\n") for line in lines]
    if not any(visible_text(text) for text in texts):
        print(json.dumps({"error": "no text to classify on standard input"}), file=out)
        return 1
    from model.engine_choice import planned_engine
    from model.warm import warm_classifier

    planned = planned_engine(config)
    if planned.engine != "torch" and planned.folder is None:
        print(f"converting the model for {planned.engine} {planned.precision} (once; cached)", file=sys.stderr)
    classifier = warm_classifier(config)
    visible = [visible_text(text) for text in texts]
    to_run = [text for text in visible if text]
    predictions = iter(classifier.classify(to_run))
    warning = {"warning": RANDOM_WEIGHTS_NOTE} if has_random_weights(classifier.model_version) else {}
    status = 0
    for text in visible:
        if not text:
            print(json.dumps({"error": "no_text_to_classify"}), file=out)
            status = 1
            continue
        prediction = next(predictions)
        result = {
            "sentiment": prediction.sentiment,
            "confidence": round(prediction.confidence, 6),
            "model_version": classifier.model_version,
            "meta": {"raw_scores": {k: round(v, 6) for k, v in prediction.raw_scores.items()}},
            **warning,
        }
        print(json.dumps(result, ensure_ascii=False), file=out)
    return status


def main(config: Settings) -> int:
    return classify_lines(config, sys.stdin, sys.stdout)
