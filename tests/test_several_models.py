"""Several models side by side, through the job's own path (jobs.classify) with tiny models of different
label orders and a two-label one, on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config import Settings, load_settings
from db.identity import database_id
from db.models import Classification, ClassificationHistory, Consensus, Content
from db.session import session_scope
from jobs.classify import Redo, classify_contents
from jobs.outcomes import ALREADY_CLASSIFIED, ALREADY_CURRENT, CLASSIFIED, REFUSED, UNKNOWN_MODEL
from tests.fixtures_model import models_setting

_external_ids = itertools.count()
TEXTS = [
    "Stocks rally on strong earnings",
    "Shares fall after weak guidance",
    "Oil prices surge",
    "Fed cut rates",
]


@pytest.fixture(scope="session")
def loaded(tiny_models: dict[str, Path]) -> dict:
    """The four tiny models loaded once through the product's loader (as warm_classifiers would)."""
    from model.classifier import FinbertClassifier

    labels = {"roberta": ("negative", "neutral", "positive")}
    return {
        name: FinbertClassifier.load(str(path), labels=labels.get(name)) for name, path in tiny_models.items()
    }


@pytest.fixture
def installed(loaded: dict) -> Iterator[dict]:
    from model.warm import use_classifiers

    use_classifiers(dict(loaded))
    try:
        yield loaded
    finally:
        use_classifiers(None)


def settings_for(url: str, models: dict[str, Path], *names: str) -> Settings:
    return load_settings({"DATABASE_URL": url, "VOLFEFE_MODELS": models_setting(models, *names)})


def add(url: str, *texts: str) -> list[int]:
    with session_scope(url) as session:
        contents = [Content(source="t", external_id=f"m{next(_external_ids)}", text=text) for text in texts]
        session.add_all(contents)
        session.flush()
        return [content.id for content in contents]


def rows(url: str) -> dict[tuple[int, str], Classification]:
    with session_scope(url) as session:
        return {(row.content_id, row.model): row for row in session.scalars(select(Classification))}


def consensus(url: str) -> dict[int, Consensus]:
    with session_scope(url) as session:
        return {row.content_id: row for row in session.scalars(select(Consensus))}


def test_every_content_gets_one_row_per_model_and_one_consensus(
    migrated_db: str, tiny_models: dict[str, Path], installed: dict
) -> None:
    config = settings_for(migrated_db, tiny_models, "finbert", "prosus", "roberta", "sst2")
    ids = add(migrated_db, *TEXTS)
    identity = database_id(migrated_db)
    outcomes = classify_contents([(i, identity) for i in ids], migrated_db, config=config)
    assert [outcome.status for outcome in outcomes] == [CLASSIFIED] * len(ids)

    stored = rows(migrated_db)
    assert set(stored) == {(i, name) for i in ids for name in ("finbert", "prosus", "roberta", "sst2")}
    for (content_id, name), row in stored.items():
        (expected,) = installed[name].classify([TEXTS[ids.index(content_id)]])
        assert (row.sentiment, row.confidence) == (
            expected.sentiment,
            pytest.approx(expected.confidence, abs=1e-5),
        )
        assert row.model_version == installed[name].model_version
        assert set(row.meta["raw_scores"]) == set(installed[name].labels)  # sst2: no neutral
        assert row.meta["processing"]["model"] == name
    assert set(stored[(ids[0], "sst2")].meta["raw_scores"]) == {"negative", "positive"}

    agreed = consensus(migrated_db)
    assert set(agreed) == set(ids)
    for outcome in outcomes:
        row = agreed[outcome.content_id]
        assert (outcome.sentiment, outcome.confidence) == (row.sentiment, pytest.approx(row.confidence))
        assert set(outcome.models) == set(row.models) == {"finbert", "prosus", "roberta", "sst2"}
        assert outcome.consensus == {
            "agreement": row.agreement,
            "ambiguous": row.ambiguous,
            "dissent": row.dissent,
        }
        labels = {name: stored[(outcome.content_id, name)].sentiment for name in config.model_names}
        assert row.dissent == [name for name, label in labels.items() if label != row.sentiment]
        assert row.basis == "finbert:1,prosus:1,roberta:1,sst2:0.5"
        assert row.models["sst2"]["weight"] == 0.5

    again = classify_contents([(i, identity) for i in ids], migrated_db, config=config)
    assert {outcome.reason for outcome in again} == {ALREADY_CLASSIFIED}
    assert rows(migrated_db).keys() == stored.keys()


def test_a_model_added_later_is_the_only_one_run(
    migrated_db: str, tiny_models: dict[str, Path], installed: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = database_id(migrated_db)
    ids = add(migrated_db, *TEXTS)
    two = settings_for(migrated_db, tiny_models, "finbert", "prosus")
    classify_contents([(i, identity) for i in ids], migrated_db, config=two)
    before = {key: (row.id, row.created_at) for key, row in rows(migrated_db).items()}
    assert {row.basis for row in consensus(migrated_db).values()} == {"finbert:1,prosus:1"}

    ran: list[str] = []
    for name, classifier in installed.items():
        real = classifier.classify_batch
        monkeypatch.setattr(
            classifier, "classify_batch", lambda texts, real=real, name=name: ran.append(name) or real(texts)
        )
    three = settings_for(migrated_db, tiny_models, "finbert", "prosus", "sst2")
    outcomes = classify_contents([(i, identity) for i in ids], migrated_db, config=three)

    assert ran == ["sst2"]  # the others' rows are current: not read again
    assert all(outcome.status == CLASSIFIED and set(outcome.models) == {"sst2"} for outcome in outcomes)
    after = rows(migrated_db)
    assert {key: (row.id, row.created_at) for key, row in after.items() if key[1] != "sst2"} == before
    assert {key for key in after if key[1] == "sst2"} == {(i, "sst2") for i in ids}
    assert {row.basis for row in consensus(migrated_db).values()} == {"finbert:1,prosus:1,sst2:0.5"}


def test_reclassifying_one_model_replaces_its_rows_only(
    migrated_db: str, tiny_models: dict[str, Path], installed: dict
) -> None:
    identity = database_id(migrated_db)
    config = settings_for(migrated_db, tiny_models, "finbert", "prosus", "sst2")
    ids = add(migrated_db, *TEXTS)
    classify_contents([(i, identity) for i in ids], migrated_db, config=config)
    before = rows(migrated_db)

    current = classify_contents(
        [(ids[0], identity)], migrated_db, replace={(ids[0], identity): Redo(False, "prosus")}, config=config
    )
    assert current[0].reason == ALREADY_CURRENT  # made by this very version: kept unless forced

    forced = classify_contents(
        [(i, identity) for i in ids],
        migrated_db,
        replace={(i, identity): Redo(True, "prosus") for i in ids},
        config=config,
    )
    assert all(outcome.status == CLASSIFIED and set(outcome.models) == {"prosus"} for outcome in forced)
    after = rows(migrated_db)
    assert after.keys() == before.keys()
    for key, row in after.items():
        assert row.id == before[key].id  # updated in place: one current row throughout
    with session_scope(migrated_db) as session:
        history = session.execute(select(ClassificationHistory.content_id, ClassificationHistory.model)).all()
    assert sorted(history) == sorted((i, "prosus") for i in ids)
    assert set(consensus(migrated_db)) == set(ids)


def test_a_reclassification_of_a_model_the_worker_lacks_is_refused(
    migrated_db: str, tiny_models: dict[str, Path], installed: dict
) -> None:
    identity = database_id(migrated_db)
    config = settings_for(migrated_db, tiny_models, "finbert")
    (content_id,) = add(migrated_db, "Stocks rally")
    (outcome,) = classify_contents(
        [(content_id, identity)],
        migrated_db,
        replace={(content_id, identity): Redo(True, "gone")},
        config=config,
    )
    assert (outcome.status, outcome.reason) == (REFUSED, UNKNOWN_MODEL)
    assert "model 'gone' is not configured on this worker (VOLFEFE_MODELS: finbert)" in outcome.error
    with session_scope(migrated_db) as session:
        assert session.scalar(select(func.count()).select_from(Classification)) == 0


def test_a_model_whose_labels_cannot_be_mapped_is_refused_at_start(tiny_models: dict[str, Path]) -> None:
    from model.classifier import ModelLoadError
    from model.warm import use_classifiers, warm_classifiers

    use_classifiers(None)
    config = load_settings(
        {"VOLFEFE_MODELS": f"finbert={tiny_models['finbert']},roberta={tiny_models['roberta']}"}
    )
    try:
        with pytest.raises(ModelLoadError) as caught:
            warm_classifiers(config)
    finally:
        use_classifiers(None)
    message = str(caught.value)
    assert message.startswith("cannot use VOLFEFE_MODELS model 'roberta'=")
    assert (
        "names no labels (label_0, label_1, label_2)" in message
        and "labels=negative/neutral/positive" in message
    )
    assert "\n" not in message
