"""Migration 0005 on a populated database of the old schema (one classification per content), on SQLite
and a real PostgreSQL: every row, its history and its audit are kept; each classified content gets its
consensus; the new schema then takes a second model's rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from db.migrate import upgrade
from db.session import engine_for

SCORES = [
    {"positive": 0.7, "negative": 0.2, "neutral": 0.1},
    {"positive": 0.05, "negative": 0.9, "neutral": 0.05},
    {"positive": 0.3, "negative": 0.3, "neutral": 0.4},
]


def audit(scores: dict[str, float], index: int) -> dict:
    """An audit as the old worker wrote it (jobs.audit of revision 0004's time)."""
    return {
        "raw_scores": scores,
        "text": {"characters": 20 + index, "tokens": 5, "windows": 1, "sha256": f"{index:064x}"},
        "quality": {"margin": 0.1, "entropy": 0.9},
        "processing": {"worker": "old-host:1", "engine": "torch", "precision": "bf16", "attempt": 1},
    }


@pytest.fixture
def old_database(database_url: str):
    """The database at revision 0004, filled as the old version left it: 40 contents, 30 classified (one
    without an audit), 2 skipped, 8 waiting, 5 history rows."""
    upgrade(database_url, "0004")
    engine = engine_for(database_url)
    contents, classifications, history = [], [], []
    for index in range(40):
        classified = index < 30
        contents.append(
            {
                "id": index + 1,
                "source": "truth",
                "external_id": f"old-{index}",
                "text": f"post {index}",
                "classified": classified,
                "skip_reason": "no_text_to_classify" if index in (30, 31) else None,
            }
        )
        if classified:
            scores = SCORES[index % 3]
            sentiment = max(scores, key=scores.__getitem__)
            meta = audit(scores, index) if index != 7 else {"raw_scores": scores}
            classifications.append(
                {
                    "content_id": index + 1,
                    "sentiment": sentiment,
                    "confidence": scores[sentiment],
                    "model_version": "yiyanghkust/finbert-tone+bf16",
                    "meta": json.dumps(meta),
                }
            )
    for index in range(5):
        history.append(
            {
                "content_id": index + 1,
                "sentiment": "neutral",
                "confidence": 0.5,
                "model_version": "yiyanghkust/finbert-tone+fp32",
                "meta": json.dumps({"raw_scores": {"neutral": 0.5, "positive": 0.3, "negative": 0.2}}),
                "classified_at": datetime(2026, 11, 1, tzinfo=UTC),
            }
        )
    with engine.begin() as connection:
        for table, rows in (
            ("contents", contents),
            ("classifications", classifications),
            ("classification_history", history),
        ):
            columns = list(rows[0])
            cast = "CAST(:meta AS JSONB)" if database_url.startswith("postgresql") else ":meta"
            values = ", ".join(cast if column == "meta" else f":{column}" for column in columns)
            connection.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"), rows)
    before = _snapshot(engine)
    try:
        yield database_url, before
    finally:
        engine.dispose()


def _snapshot(engine) -> dict:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT id, content_id, sentiment, confidence, model_version, meta, created_at FROM classifications"
            )
        ).all()
        history = connection.execute(
            sa.text(
                "SELECT id, content_id, sentiment, confidence, model_version, meta FROM classification_history"
            )
        ).all()
        contents = connection.execute(
            sa.text("SELECT id, source, external_id, text, skip_reason FROM contents")
        ).all()
    load = lambda value: json.loads(value) if isinstance(value, str) else value  # noqa: E731
    return {
        "classifications": {row[0]: (row[1], row[2], row[3], row[4], load(row[5]), row[6]) for row in rows},
        "history": {row[0]: (row[1], row[2], row[3], row[4], load(row[5])) for row in history},
        "contents": {row[0]: tuple(row[1:]) for row in contents},
    }


def test_the_upgrade_keeps_every_row_and_adds_a_consensus_per_classified_content(old_database) -> None:
    url, before = old_database
    upgrade(url)
    engine = engine_for(url)
    after = _snapshot(engine)
    assert after == before  # every classification, history row and content kept as it was
    with engine.connect() as connection:
        models = connection.execute(sa.text("SELECT DISTINCT model FROM classifications")).scalars().all()
        history_models = (
            connection.execute(sa.text("SELECT DISTINCT model FROM classification_history")).scalars().all()
        )
        consensus = connection.execute(
            sa.text(
                "SELECT content_id, sentiment, confidence, agreement, ambiguous, basis, margin FROM consensus"
            )
        ).all()
        columns = {column["name"] for column in sa.inspect(connection).get_columns("contents")}
    assert models == ["finbert"] and history_models == ["finbert"]
    assert "classified" not in columns
    by_content = {row[0]: row for row in consensus}
    assert set(by_content) == {row[0] for row in before["classifications"].values()}
    for content_id, sentiment, confidence, *_ in before["classifications"].values():
        row = by_content[content_id]
        assert (row[1], row[2], row[3], row[5]) == (sentiment, confidence, 1.0, "finbert:1")
        assert bool(row[4]) == (confidence < 0.6)
    assert by_content[3][6] == pytest.approx(0.1)  # margin of 0.4/0.3/0.3

    # The new schema takes a second model's classification of a migrated content, and no second
    # classification by the same model.
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO classifications (content_id, model, sentiment, confidence, model_version, meta) "
                "VALUES (1, 'prosus', 'positive', 0.8, 'ProsusAI/finbert+bf16', '{}')"
            )
        )
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO classifications (content_id, model, sentiment, confidence, model_version, meta) "
                "VALUES (1, 'finbert', 'positive', 0.8, 'x', '{}')"
            )
        )


def test_the_queries_read_the_migrated_database(old_database) -> None:
    from db import queries
    from db.session import session_scope

    url, _ = old_database
    upgrade(url)
    with session_scope(url) as session:
        counts = queries.content_counts(session, ["finbert"])
        assert (counts.total, counts.classified, counts.skipped) == (40, 30, 2)
        assert queries.unclassified_by_model(session, ["finbert"]) == {"finbert": 8}
        # The migrated contents lack their entities: the sweep brings them up to date (bounded backfill).
        (page,) = queries.unclassified_id_pages(session, ["finbert"], scope="backfill")
        assert len(page) == 30
