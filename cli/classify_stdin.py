"""``volfefe classify``: one JSON result per line of standard input."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

from config import Settings
from consensus.vote import Reading, combine
from model.model_marks import has_random_weights
from model.visible_text import visible_text

if TYPE_CHECKING:
    from model.classifier import Prediction

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
    from model.warm import check_models_readable, warm_classifiers

    for spec in config.models:
        planned = planned_engine(config.for_model(spec))
        if planned.engine != "torch" and planned.folder is None:
            check_models_readable(config)  # a model that cannot be read: its one line, not a conversion
            print(
                f"converting model {spec.name} for {planned.engine} {planned.precision} (once; cached)",
                file=sys.stderr,
            )
    classifiers = warm_classifiers(config)
    visible = [visible_text(text) for text in texts]
    to_run = [text for text in visible if text]
    predictions = {name: iter(classifier.classify(to_run)) for name, classifier in classifiers.items()}
    random = any(has_random_weights(classifier.model_version) for classifier in classifiers.values())
    warning = {"warning": RANDOM_WEIGHTS_NOTE} if random else {}
    weights = {spec.name: spec.weight for spec in config.models}
    status = 0
    for text in visible:
        if not text:
            print(json.dumps({"error": "no_text_to_classify"}), file=out)
            status = 1
            continue
        readings = {name: (next(each), classifiers[name].model_version) for name, each in predictions.items()}
        result = _result(readings, weights, config.ambiguous_confidence)
        print(json.dumps({**result, **warning}, ensure_ascii=False), file=out)
    return status


def _one(prediction: Prediction, version: str) -> dict:
    return {
        "sentiment": prediction.sentiment,
        "confidence": round(prediction.confidence, 6),
        "model_version": version,
        "meta": {"raw_scores": {k: round(v, 6) for k, v in prediction.raw_scores.items()}},
    }


def _result(
    readings: dict[str, tuple[Prediction, str]], weights: dict[str, float], ambiguous_below: float
) -> dict:
    """One model: its reading. Several: the consensus, with each model's reading under ``models``."""
    if len(readings) == 1:
        ((prediction, version),) = readings.values()
        return _one(prediction, version)
    verdict = combine(
        [
            Reading(name, p.sentiment, p.confidence, p.raw_scores, weights[name], version)
            for name, (p, version) in readings.items()
        ],
        ambiguous_below,
    )
    return {
        "sentiment": verdict.sentiment,
        "confidence": round(verdict.confidence, 6),
        "consensus": {
            "method": verdict.method,
            "agreement": round(verdict.agreement, 6),
            "ambiguous": verdict.ambiguous,
            "dissent": verdict.dissent,
            "scores": {k: round(v, 6) for k, v in verdict.scores.items()},
        },
        "models": {name: _one(prediction, version) for name, (prediction, version) in readings.items()},
    }


def main(config: Settings) -> int:
    return classify_lines(config, sys.stdin, sys.stdout)
