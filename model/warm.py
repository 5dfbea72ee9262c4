"""The process's warm classifiers: each configured model loaded once, then used by every job the process runs."""

from __future__ import annotations

from config import DEFAULT_MODEL_NAME, ModelSpec, Settings, settings
from model.classifier import FinbertClassifier, configure_torch

#: model name -> its loaded classifier.
_classifiers: dict[str, FinbertClassifier] = {}
_configured = False


def _setting(spec: ModelSpec, config: Settings) -> str:
    """Where the user configures ``spec``, for messages."""
    if len(config.models) == 1 and spec.source == config.model:
        return "FINBERT_MODEL"
    return f"VOLFEFE_MODELS model {spec.name!r}"


def warm_classifiers(config: Settings | None = None) -> dict[str, FinbertClassifier]:
    """Every configured model's classifier, by name in configuration order, each loaded on first use."""
    global _configured
    config = config or settings()
    missing = [spec for spec in config.models if spec.name not in _classifiers]
    if missing and not _configured:
        configure_torch(config.torch_threads)
        if config.engine == "openvino":  # it pins its threads: workers must not share cores
            from model.pinning import claim_cores

            claim_cores(config.worker_processes)
        _configured = True
    for spec in missing:
        _classifiers[spec.name] = FinbertClassifier.load(
            spec.source,
            config.precision,
            config.max_length,
            config.batch_size,
            spec.labels,
            engine=config.engine,
            engine_cache=config.engine_cache,
            threads=config.torch_threads,
            setting=_setting(spec, config),
        )
    return {spec.name: _classifiers[spec.name] for spec in config.models}


def warm_classifier(config: Settings | None = None) -> FinbertClassifier:
    """The first configured model's classifier (``volfefe classify``, benchmarks: one model)."""
    config = config or settings()
    return warm_classifiers(config)[config.models[0].name]


def use_classifiers(classifiers: dict[str, FinbertClassifier] | None) -> None:
    """Install already loaded classifiers by model name (or forget them all, with None)."""
    _classifiers.clear()
    _classifiers.update(classifiers or {})


def use_classifier(classifier: FinbertClassifier | None) -> None:
    """Install an already loaded classifier as the default model's (or forget them all, with None)."""
    use_classifiers({DEFAULT_MODEL_NAME: classifier} if classifier is not None else None)
