"""The process's warm classifier, loaded once, and predictions a worker computed ahead for a batch."""

from __future__ import annotations

from config import Settings, settings
from workers.classifier import FinbertClassifier, Prediction, configure_torch

_classifier: FinbertClassifier | None = None
#: visible text -> prediction, filled by a batching worker just before it runs the batch's jobs.
_ahead: dict[str, Prediction] = {}


def warm_classifier(config: Settings | None = None) -> FinbertClassifier:
    """The classifier of this process, loaded on first use from FINBERT_MODEL."""
    global _classifier
    if _classifier is None:
        config = config or settings()
        configure_torch(config.torch_threads)
        _classifier = FinbertClassifier.load(
            config.model, config.precision, config.max_length, config.batch_size, config.labels
        )
    return _classifier


def use_classifier(classifier: FinbertClassifier | None) -> None:
    """Install an already loaded classifier as this process's (or forget it, with None)."""
    global _classifier
    _classifier = classifier
    _ahead.clear()


def predict_ahead(texts: list[str]) -> None:
    """Classify ``texts`` in one pass now, so that the jobs about to run find their results ready."""
    _ahead.clear()
    unique = list(dict.fromkeys(texts))
    _ahead.update(zip(unique, warm_classifier().classify(unique), strict=True))


def predict(texts: list[str]) -> list[Prediction]:
    """Predictions for ``texts``: those computed ahead are taken (once), the rest are computed now."""
    unique = list(dict.fromkeys(texts))
    found = {text: _ahead.pop(text) for text in unique if text in _ahead}
    missing = [text for text in unique if text not in found]
    if missing:
        found.update(zip(missing, warm_classifier().classify(missing), strict=True))
    return [found[text] for text in texts]
