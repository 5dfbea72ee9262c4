"""Pytest plugin: the tiny random model, the process classifier and a migrated database.

Enabled from tests/conftest.py with ``pytest_plugins = ["tests.fixtures_model"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (labels Neutral/Positive/Negative, 128 positions), built once per session."""
    from tools.random_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir: Path):
    """The tiny model loaded through the product's loader (fp32), shared by the session."""
    from model.classifier import FinbertClassifier

    return FinbertClassifier.load(str(tiny_model_dir))


#: words the planted token model tags, and their tags (tools.random_model.build_tiny_token_model).
PLANTED_TAGS = {
    "acme": "B-ORG",
    "widgets": "I-ORG",
    "initech": "B-ORG",
    "wallmart": "B-ORG",
    "microsoft": "B-ORG",
    "corp": "I-ORG",
    "goldman": "B-ORG",
    "betsy": "B-PER",
    "ford": "I-PER",
}


@pytest.fixture(scope="session")
def tiny_token_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT token classifier (CoNLL tags: arbitrary ones), built once per session."""
    from tools.random_model import build_tiny_token_model

    return build_tiny_token_model(tmp_path_factory.mktemp("tiny-token-model") / "model")


@pytest.fixture(scope="session")
def planted_token_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT token classifier that tags the words of ``PLANTED_TAGS`` (and nothing else)."""
    from tools.random_model import build_tiny_token_model

    return build_tiny_token_model(tmp_path_factory.mktemp("planted-token-model") / "model", PLANTED_TAGS)


@pytest.fixture
def classifier(tiny_classifier):
    """The tiny model installed as this process's warm classifier for one test."""
    from model.warm import use_classifier

    use_classifier(tiny_classifier)
    try:
        yield tiny_classifier
    finally:
        use_classifier(None)


#: tiny models with other label orders than ``tiny_model_dir``'s, as real models have them: ProsusAI's
#: order, cardiffnlp twitter-roberta's unnamed labels (mapped by VOLFEFE_MODELS' labels=), and an SST-2
#: style two-label model.
OTHER_TINY_MODELS = {
    "prosus": ["positive", "negative", "neutral"],
    "roberta": ["LABEL_0", "LABEL_1", "LABEL_2"],
    "sst2": ["NEGATIVE", "POSITIVE"],
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """Four tiny models by name: ``finbert`` (``tiny_model_dir``) and OTHER_TINY_MODELS (other seeds, so
    that they disagree)."""
    from tools.random_model import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    models = {"finbert": tiny_model_dir}
    for seed, (name, labels) in enumerate(OTHER_TINY_MODELS.items(), start=1):
        models[name] = build_tiny_model(root / name, seed=seed, labels=labels)
    return models


def models_setting(models: dict[str, Path], *names: str) -> str:
    """VOLFEFE_MODELS for these of ``tiny_models`` (twitter-roberta's unnamed labels mapped explicitly)."""
    entries = []
    for name in names:
        entry = f"{name}={models[name]}"
        if name == "roberta":
            entry += ";labels=negative/neutral/positive"
        if name == "sst2":
            entry += ";weight=0.5"
        entries.append(entry)
    return ",".join(entries)


@pytest.fixture
def migrated_db(database_url: str) -> Iterator[str]:
    """``database_url`` (SQLite and PostgreSQL) with every migration applied.

    The engine cached for the URL by ``db.session.engine_for`` is disposed afterwards, so that no
    pooled connection keeps the PostgreSQL database from being dropped.
    """
    from db.migrate import upgrade
    from db.session import engine_for

    upgrade(database_url)
    try:
        yield database_url
    finally:
        engine_for(database_url).dispose()
