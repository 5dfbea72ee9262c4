"""The process's warm classifiers: each configured model loaded once, then used by every job the process runs."""

from __future__ import annotations

from config import DEFAULT_MODEL_NAME, ModelSpec, Settings, settings
from model.classifier import FinbertClassifier, configure_threads, read_model_config
from model.engine_choice import EngineChoice, prepare_engine, record_openvino_load_failure
from model.engines import EngineLoadError

#: model name -> its loaded classifier.
_classifiers: dict[str, FinbertClassifier] = {}
_configured = False


def _setting(spec: ModelSpec, config: Settings) -> str:
    """Where the user configures ``spec``, for messages."""
    if len(config.models) == 1 and spec.source == config.model:
        return "FINBERT_MODEL"
    return f"VOLFEFE_MODELS model {spec.name!r}"


def check_models_readable(config: Settings) -> None:
    """ModelLoadError (one line, as a worker would log it) when a configured model cannot be read: a
    command checks this before it converts a model or starts a worker."""
    for spec in config.models:
        read_model_config(spec.source, _setting(spec, config))


def warm_classifiers(config: Settings | None = None) -> dict[str, FinbertClassifier]:
    """Every configured model's classifier, by name in configuration order, each loaded on first use.

    With OpenVINO, each model's conversion is made ready first (``model.engine_choice``: built once
    under a lock, or torch with one warning line when it cannot be), then the process pins its cores.
    """
    global _configured
    config = config or settings()
    missing = [spec for spec in config.models if spec.name not in _classifiers]
    if missing and not _configured:
        configure_threads(config.torch_threads)
        _configured = True
    pinned = False
    for spec in missing:
        one = config.for_model(spec)
        choice = prepare_engine(one)
        if choice.engine == "openvino" and not pinned:  # it pins its threads: workers must not share cores
            from model.pinning import claim_cores

            claim_cores(config.worker_processes)
            pinned = True
        try:
            _classifiers[spec.name] = _load(one, spec, choice, _setting(spec, config))
        except EngineLoadError as error:
            # The conversion is there but does not load here: torch, as after a failed build.
            fallback = record_openvino_load_failure(one, str(error))
            _classifiers[spec.name] = _load(one, spec, fallback, _setting(spec, config))
    return {spec.name: _classifiers[spec.name] for spec in config.models}


def _load(config: Settings, spec: ModelSpec, choice: EngineChoice, setting: str) -> FinbertClassifier:
    return FinbertClassifier.load(
        spec.source,
        choice.precision,
        config.max_length,
        config.batch_size,
        spec.labels,
        engine=choice.engine,
        engine_cache=config.engine_cache,
        threads=config.torch_threads,
        setting=setting,
    )


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
