"""The process's warm classifier: loaded once, then used by every job the process runs."""

from __future__ import annotations

from config import Settings, settings
from model.classifier import FinbertClassifier, configure_torch

_classifier: FinbertClassifier | None = None


def warm_classifier(config: Settings | None = None) -> FinbertClassifier:
    """The classifier of this process, loaded on first use from FINBERT_MODEL."""
    global _classifier
    if _classifier is None:
        config = config or settings()
        configure_torch(config.torch_threads)
        if config.engine == "openvino":  # it pins its threads: workers must not share cores
            from model.pinning import claim_cores

            claim_cores(config.worker_processes)
        _classifier = FinbertClassifier.load(
            config.model,
            config.precision,
            config.max_length,
            config.batch_size,
            config.labels,
            engine=config.engine,
            engine_cache=config.engine_cache,
            threads=config.torch_threads,
        )
    return _classifier


def use_classifier(classifier: FinbertClassifier | None) -> None:
    """Install an already loaded classifier as this process's (or forget it, with None)."""
    global _classifier
    _classifier = classifier
