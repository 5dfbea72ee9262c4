"""db.store and db.queries on a migrated database: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from db import queries
from db.models import SENTIMENTS, Classification, ClassificationHistory, Consensus, Content
from db.session import engine_for, session_scope
from db.store import NewClassification, record_skip, replace_classifications, save_classifications
from tests.rows import store_classification

SCORES = {"positive": 0.7, "negative": 0.2, "neutral": 0.1}


def add_contents(url: str, count: int, classified: bool = False, prefix: str = "c") -> list[int]:
    with session_scope(url) as session:
        contents = [
            Content(source="test", external_id=f"{prefix}{index}", text=f"post {index}")
            for index in range(count)
        ]
        session.add_all(contents)
        session.flush()
        ids = [content.id for content in contents]
    if classified:
        for content_id in ids:
            classify(url, content_id, "neutral", 0.5)
    return ids


def scores_for(sentiment: str, confidence: float) -> dict[str, float]:
    """Scores that agree with the label: ``confidence`` for it, the rest shared by the others."""
    others = [other for other in SENTIMENTS if other != sentiment]
    return {sentiment: confidence, **dict.fromkeys(others, (1 - confidence) / len(others))}


def classify(
    url: str,
    content_id: int,
    sentiment: str,
    confidence: float,
    version: str = "m+fp32",
    model: str = "finbert",
) -> bool:
    scores = scores_for(sentiment, confidence) if sentiment in SENTIMENTS else SCORES
    with session_scope(url) as session:
        return store_classification(session, content_id, sentiment, confidence, version, scores, model=model)


def classification_rows(url: str, content_id: int) -> list[Classification]:
    with session_scope(url) as session:
        return list(session.scalars(select(Classification).where(Classification.content_id == content_id)))


# -- db.store ------------------------------------------------------------------------------------


def test_save_inserts_one_classification_and_its_consensus(migrated_db: str) -> None:
    target, other = add_contents(migrated_db, 2)
    assert classify(migrated_db, target, "positive", 0.7) is True
    (row,) = classification_rows(migrated_db, target)
    assert (row.model, row.sentiment, row.confidence, row.model_version) == (
        "finbert",
        "positive",
        0.7,
        "m+fp32",
    )
    assert row.created_at is not None
    with session_scope(migrated_db) as session:
        consensus = session.get(Consensus, target)
        assert (consensus.sentiment, consensus.confidence, consensus.agreement) == ("positive", 0.7, 1.0)
        assert consensus.scores == scores_for("positive", 0.7)
        assert consensus.dissent == [] and consensus.basis == "finbert:1"
        assert consensus.margin == pytest.approx(0.55)
        assert session.get(Consensus, other) is None


def test_saving_twice_keeps_the_first_row(migrated_db: str) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    assert classify(migrated_db, content_id, "positive", 0.7, "first") is True
    assert classify(migrated_db, content_id, "negative", 0.9, "second") is False
    rows = classification_rows(migrated_db, content_id)
    assert len(rows) == 1
    assert (rows[0].sentiment, rows[0].confidence, rows[0].model_version) == ("positive", 0.7, "first")


def test_one_row_per_content_and_model(migrated_db: str) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    assert classify(migrated_db, content_id, "positive", 0.7, "a", model="finbert") is True
    assert classify(migrated_db, content_id, "negative", 0.9, "b", model="roberta") is True
    assert classify(migrated_db, content_id, "neutral", 0.9, "b2", model="roberta") is False
    rows = sorted(classification_rows(migrated_db, content_id), key=lambda row: row.model)
    assert [(row.model, row.sentiment, row.model_version) for row in rows] == [
        ("finbert", "positive", "a"),
        ("roberta", "negative", "b"),
    ]
    with pytest.raises(IntegrityError), session_scope(migrated_db) as session:
        session.add(Classification(content_id=content_id, model="finbert", sentiment="neutral", confidence=0.5,
                                   model_version="x", meta={}))  # fmt: skip


def test_save_returns_the_keys_inserted(migrated_db: str) -> None:
    first, second = add_contents(migrated_db, 2)
    classify(migrated_db, first, "positive", 0.7, model="a")
    rows = [
        NewClassification(first, "a", "negative", 0.6, "v", SCORES),
        NewClassification(first, "b", "negative", 0.6, "v", SCORES),
        NewClassification(second, "a", "neutral", 0.6, "v", SCORES),
    ]
    with session_scope(migrated_db) as session:
        assert save_classifications(session, rows) == {(first, "b"), (second, "a")}
        assert save_classifications(session, []) == set()


def test_replace_keeps_the_old_row_in_history_per_model(migrated_db: str) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    classify(migrated_db, content_id, "positive", 0.7, "old", model="a")
    classify(migrated_db, content_id, "positive", 0.7, "old", model="b")
    new = [NewClassification(content_id, "a", "negative", 0.8, "new", SCORES)]
    with session_scope(migrated_db) as session:
        assert replace_classifications(session, new) == {(content_id, "a"): "replaced"}
    with session_scope(migrated_db) as session:
        assert replace_classifications(session, new) == {(content_id, "a"): "current"}
        assert replace_classifications(session, new, force={(content_id, "a")}) == {
            (content_id, "a"): "replaced"
        }
    rows = {row.model: row for row in classification_rows(migrated_db, content_id)}
    assert (rows["a"].sentiment, rows["a"].model_version) == ("negative", "new")
    assert (rows["b"].sentiment, rows["b"].model_version) == ("positive", "old")  # the other model untouched
    with session_scope(migrated_db) as session:
        history = session.execute(
            select(ClassificationHistory.model, ClassificationHistory.model_version)
        ).all()
    assert sorted(history) == [("a", "new"), ("a", "old")]


def test_save_is_part_of_the_callers_transaction(migrated_db: str) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    with pytest.raises(RuntimeError), session_scope(migrated_db) as session:
        store_classification(session, content_id, "positive", 0.7, "m", SCORES)
        raise RuntimeError("rolled back")
    assert classification_rows(migrated_db, content_id) == []
    with session_scope(migrated_db) as session:
        assert session.get(Consensus, content_id) is None


def test_raw_scores_round_trip(migrated_db: str) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    scores = {"positive": 0.123456789012, "negative": 1e-9, "neutral": 0.876543210987}
    with session_scope(migrated_db) as session:
        store_classification(session, content_id, "neutral", scores["neutral"], "m", scores)
    (row,) = classification_rows(migrated_db, content_id)
    assert row.meta == {"raw_scores": scores}
    column = next(
        col
        for col in inspect(engine_for(migrated_db)).get_columns("classifications")
        if col["name"] == "meta"
    )
    if migrated_db.startswith("postgresql"):
        assert isinstance(column["type"], JSONB)
        with session_scope(migrated_db) as session:
            # JSONB operators work on it: the document is stored as JSON, not as text.
            value = session.scalar(
                select(Classification.meta["raw_scores"]["neutral"].as_float()).where(
                    Classification.content_id == content_id
                )
            )
        assert value == pytest.approx(scores["neutral"])


@pytest.mark.parametrize(
    ("sentiment", "confidence"),
    [("bullish", 0.5), ("Positive", 0.5), ("", 0.5), ("positive", 1.5), ("negative", -0.01)],
)
def test_check_constraints_reject_bad_values(migrated_db: str, sentiment: str, confidence: float) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    with pytest.raises(IntegrityError):
        classify(migrated_db, content_id, sentiment, confidence)
    assert classification_rows(migrated_db, content_id) == []


@pytest.mark.parametrize("confidence", [0.0, 1.0])
def test_confidence_bounds_are_allowed(migrated_db: str, confidence: float) -> None:
    (content_id,) = add_contents(migrated_db, 1)
    assert classify(migrated_db, content_id, "neutral", confidence) is True


def test_classification_needs_an_existing_content(migrated_db: str) -> None:
    with pytest.raises(IntegrityError):
        classify(migrated_db, 424242, "neutral", 0.5)


def test_deleting_a_content_deletes_its_classification(migrated_db: str) -> None:
    first, second = add_contents(migrated_db, 2)
    classify(migrated_db, first, "positive", 0.7)
    classify(migrated_db, second, "negative", 0.6)
    with session_scope(migrated_db) as session:
        session.execute(delete(Content).where(Content.id == first))
    with session_scope(migrated_db) as session:
        assert session.scalar(select(func.count()).select_from(Classification)) == 1
        assert session.scalar(select(Classification.content_id)) == second


def test_source_and_external_id_are_unique(migrated_db: str) -> None:
    add_contents(migrated_db, 1, prefix="dup")
    with pytest.raises(IntegrityError):
        add_contents(migrated_db, 1, prefix="dup")
    with session_scope(migrated_db) as session:
        session.add(Content(source="other", external_id="dup0", text="same id, other source"))


# -- db.queries ----------------------------------------------------------------------------------


def test_unclassified_ids_oldest_first_with_limit(migrated_db: str) -> None:
    ids = add_contents(migrated_db, 6)
    classify(migrated_db, ids[1], "positive", 0.7)
    with session_scope(migrated_db) as session:
        record_skip(session, ids[4], "no_text_to_classify")
    add_contents(migrated_db, 2, classified=True, prefix="done")
    with session_scope(migrated_db) as session:
        # Neither classified nor skipped for good.
        assert queries.unclassified_ids(session) == [ids[0], ids[2], ids[3], ids[5]]
        assert queries.unclassified_ids(session, limit=2) == [ids[0], ids[2]]
        assert queries.unclassified_ids(session, limit=0) == []


def test_unclassified_by_several_models_new_and_backfill(migrated_db: str) -> None:
    ids = add_contents(migrated_db, 5)
    classify(migrated_db, ids[0], "positive", 0.7, model="a")
    classify(migrated_db, ids[0], "positive", 0.7, model="b")  # complete
    classify(migrated_db, ids[1], "positive", 0.7, model="a")  # lacks b
    classify(migrated_db, ids[2], "positive", 0.7, model="old")  # a model no longer configured
    with session_scope(migrated_db) as session:
        record_skip(session, ids[4], "no_text_to_classify")
    with session_scope(migrated_db) as session:
        models = ["a", "b"]
        assert queries.unclassified_ids(session, models) == [ids[1], ids[2], ids[3]]
        assert queries.unclassified_ids(session, ["a"]) == [ids[2], ids[3]]
        assert list(queries.unclassified_id_pages(session, models, scope="new")) == [[ids[3]]]
        assert list(queries.unclassified_id_pages(session, models, scope="backfill")) == [[ids[1], ids[2]]]
        assert list(queries.unclassified_id_pages(session, models, limit=1, scope="backfill")) == [[ids[1]]]
        assert queries.unclassified_by_model(session, models) == {"a": 2, "b": 3}
        counts = queries.content_counts(session, models)
        assert (counts.total, counts.classified, counts.partly, counts.skipped, counts.unclassified) == (
            5,
            1,
            1,
            1,
            3,
        )
        outcomes = queries.content_outcomes(session, ids[:2], models)
    assert outcomes[ids[0]].sentiment == "positive" and outcomes[ids[0]].versions == {
        "a": "m+fp32",
        "b": "m+fp32",
    }
    assert outcomes[ids[1]].sentiment is None and outcomes[ids[1]].versions == {"a": "m+fp32"}


def test_unclassified_ids_of_an_empty_database(migrated_db: str) -> None:
    with session_scope(migrated_db) as session:
        assert queries.unclassified_ids(session) == []


def test_unclassified_pages_end_to_end_across_page_boundaries(migrated_db: str) -> None:
    ids = add_contents(migrated_db, 11)
    classify(migrated_db, ids[3], "positive", 0.7)
    expected = [content_id for content_id in ids if content_id != ids[3]]  # 10: pages of 4, 4, 2
    with session_scope(migrated_db) as session:
        pages = list(queries.unclassified_id_pages(session, page_size=4))
        limited = list(queries.unclassified_id_pages(session, limit=6, page_size=4))
        exact = list(queries.unclassified_id_pages(session, limit=8, page_size=4))
        previews = list(queries.unclassified_previews(session, limit=5, page_size=2))
    assert pages == [expected[:4], expected[4:8], expected[8:]]
    assert limited == [expected[:4], expected[4:6]]
    assert exact == [expected[:4], expected[4:8]]
    assert [content_id for content_id, _ in previews] == expected[:5]
    assert previews[0][1] == "post 0"


def test_a_content_classified_between_pages_is_not_in_a_later_page(migrated_db: str) -> None:
    ids = add_contents(migrated_db, 6)
    with session_scope(migrated_db) as session:
        pages = queries.unclassified_id_pages(session, page_size=2)
        first = next(pages)
        classify(migrated_db, ids[3], "negative", 0.9)
        rest = [content_id for page in pages for content_id in page]
    assert first == ids[:2]
    assert rest == [ids[2], ids[4], ids[5]]


def test_contents_by_id(migrated_db: str) -> None:
    ids = add_contents(migrated_db, 3)
    with session_scope(migrated_db) as session:
        found = queries.contents_by_id(session, [ids[2], 99999, ids[0], ids[2]])
        assert set(found) == {ids[0], ids[2]}
        assert found[ids[2]].external_id == "c2"
        assert found[ids[0]].text == "post 0"
        assert queries.contents_by_id(session, []) == {}
        assert queries.contents_by_id(session, iter([ids[1]])).keys() == {ids[1]}


def test_contents_and_entities_read_in_one_statement_what_the_two_reads_give(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db.entity_store import AssetRow, EntityRows, save_entities, with_entities

    monkeypatch.setattr(queries, "IDS_PER_QUERY", 2)  # three chunks for five ids
    ids = add_contents(migrated_db, 4)
    with session_scope(migrated_db) as session:
        links = [AssetRow("SPY", "etf", "default", 0)]
        save_entities(
            session,
            {
                ids[1]: EntityRows({"schema": 1}, "tests", links),
                ids[3]: EntityRows({"schema": 1}, "tests", links),
            },
        )
    asked = [ids[3], 99999, ids[0], ids[1], ids[3], ids[2]]
    with session_scope(migrated_db) as session:
        found, extracted = queries.contents_and_entities(session, asked)
        assert found.keys() == queries.contents_by_id(session, asked).keys() == set(ids)
        assert found[ids[2]].text == "post 2"
        assert extracted == with_entities(session, asked) == {ids[1], ids[3]}
        assert queries.contents_and_entities(session, []) == ({}, set())


def test_content_outcomes(migrated_db: str) -> None:
    classified, skipped, waiting = add_contents(migrated_db, 3)
    classify(migrated_db, classified, "negative", 0.8, "m+random-weights+fp32")
    with session_scope(migrated_db) as session:
        record_skip(session, skipped, "no_text_to_classify")
    with session_scope(migrated_db) as session:
        found = queries.content_outcomes(session, [waiting, 99999, classified, skipped, classified])
    assert found == {
        classified: queries.ContentOutcome(
            classified, "negative", {"finbert": "m+random-weights+fp32"}, None
        ),
        skipped: queries.ContentOutcome(skipped, None, {}, "no_text_to_classify"),
        waiting: queries.ContentOutcome(waiting, None, {}, None),
    }
    (row,) = classification_rows(migrated_db, classified)
    assert row.meta["raw_scores"] == scores_for("negative", 0.8)


def test_content_outcomes_of_more_ids_than_one_query_takes(migrated_db: str) -> None:
    ids = add_contents(migrated_db, queries.IDS_PER_QUERY + 3)
    classify(migrated_db, ids[-1], "positive", 0.6)
    with session_scope(migrated_db) as session:
        found = queries.content_outcomes(session, ids)
    assert sorted(found) == sorted(ids)
    assert found[ids[-1]].sentiment == "positive"


def test_model_versions(migrated_db: str) -> None:
    ids = add_contents(migrated_db, 3)
    classify(migrated_db, ids[0], "positive", 0.6, "a+fp32")
    classify(migrated_db, ids[1], "positive", 0.6, "b+random-weights+bf16")
    classify(migrated_db, ids[2], "neutral", 0.6, "a+fp32")
    with session_scope(migrated_db) as session:
        assert queries.model_versions(session) == {"a+fp32": 2, "b+random-weights+bf16": 1}


def _classify_many(url: str, values: list[tuple[str, float]]) -> list[int]:
    ids = add_contents(url, len(values))
    for content_id, (sentiment, confidence) in zip(ids, values, strict=True):
        classify(url, content_id, sentiment, confidence)
    return ids


def test_count_above(migrated_db: str) -> None:
    _classify_many(
        migrated_db,
        [("positive", 0.9), ("negative", 0.95), ("neutral", 0.5), ("positive", 1.0), ("negative", 0.91)],
    )
    with session_scope(migrated_db) as session:
        # Strictly above the threshold: 0.9 itself is not counted.
        assert queries.count_above(session, 0.9) == 3
        assert queries.count_above(session, 0.0) == 5
        assert queries.count_above(session, 1.0) == 0


def test_sentiment_distribution(migrated_db: str) -> None:
    with session_scope(migrated_db) as session:
        assert queries.sentiment_distribution(session) == dict.fromkeys(SENTIMENTS, 0)
    _classify_many(migrated_db, [("positive", 0.6), ("positive", 0.7), ("neutral", 0.8)])
    with session_scope(migrated_db) as session:
        assert queries.sentiment_distribution(session) == {"positive": 2, "negative": 0, "neutral": 1}


def test_content_counts(migrated_db: str) -> None:
    with session_scope(migrated_db) as session:
        empty = queries.content_counts(session)
    assert (empty.total, empty.classified, empty.skipped, empty.unclassified) == (0, 0, 0, 0)
    ids = add_contents(migrated_db, 5)
    classify(migrated_db, ids[0], "positive", 0.7)
    classify(migrated_db, ids[3], "neutral", 0.7)
    with session_scope(migrated_db) as session:
        record_skip(session, ids[4], "no_text_to_classify")
    with session_scope(migrated_db) as session:
        counts = queries.content_counts(session)
    assert (counts.total, counts.classified, counts.skipped, counts.unclassified) == (5, 2, 1, 2)


def test_record_skip(migrated_db: str) -> None:
    skipped, other = add_contents(migrated_db, 2)
    with session_scope(migrated_db) as session:
        record_skip(session, skipped, "no_text_to_classify")
    with session_scope(migrated_db) as session:
        assert session.get(Content, skipped).skip_reason == "no_text_to_classify"
        assert session.get(Content, other).skip_reason is None
    assert classification_rows(migrated_db, skipped) == []
