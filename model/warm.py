"""The process's warm classifier: loaded once, then used by every job the process runs."""

from __future__ import annotations

from config import Settings, settings
from model.classifier import FinbertClassifier, configure_torch
from model.engine_choice import EngineChoice, prepare_engine, record_openvino_load_failure
from model.engines import EngineLoadError

_classifier: FinbertClassifier | None = None


def warm_classifier(config: Settings | None = None) -> FinbertClassifier:
    """The classifier of this process, loaded on first use from FINBERT_MODEL.

    With OpenVINO, its conversion is made ready first (``model.engine_choice``: built once under a
    lock, or torch with one warning line when it cannot be), then the process pins its cores.
    """
    global _classifier
    if _classifier is None:
        config = config or settings()
        configure_torch(config.torch_threads)
        choice = prepare_engine(config)
        if choice.engine == "openvino":  # it pins its threads: workers must not share cores
            from model.pinning import claim_cores

            claim_cores(config.worker_processes)
        try:
            _classifier = _load(config, choice)
        except EngineLoadError as error:
            # The conversion is there but does not load here: torch, as after a failed build.
            fallback = record_openvino_load_failure(config, str(error))
            _classifier = _load(config, fallback)
    return _classifier


def _load(config: Settings, choice: EngineChoice) -> FinbertClassifier:
    return FinbertClassifier.load(
        config.model,
        choice.precision,
        config.max_length,
        config.batch_size,
        config.labels,
        engine=choice.engine,
        engine_cache=config.engine_cache,
        threads=config.torch_threads,
    )


def use_classifier(classifier: FinbertClassifier | None) -> None:
    """Install an already loaded classifier as this process's (or forget it, with None)."""
    global _classifier
    _classifier = classifier
