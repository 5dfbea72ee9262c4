"""The reaction job end to end on a database (SQLite and a real PostgreSQL): prices imported by the real
importer, a post classified by the job (which links it to assets), its reaction computed and stored, and
the enqueueing around it: after classification, after an import, and the sweep's due reactions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import select, update

from config import load_settings
from db.identity import database_id
from db.models import Content, ContentAsset, ContentEntities, Reaction, ReactionPath
from db.session import session_scope
from jobs.classify import classify_contents
from jobs.outcomes import CONTENT_NOT_FOUND, NO_ENTITIES, NO_PUBLICATION_TIME, REACTED, SKIPPED
from jobs.queue import react_job_id_for
from jobs.react import after_classification, react_contents, reactions_due, record_import
from market.importer import import_prices_file
from market.synthetic import write_bars
from tests.test_market_reaction import scenario

POSTED = datetime(2025, 6, 10, 14, 0, 30, tzinfo=UTC)  # Tuesday 10:00:30 EDT


@pytest.fixture
def priced(migrated_db: str, tmp_path: Path) -> tuple[str, object]:
    """The database with a planted move of SPY at POSTED, imported as a vendor's minute bars."""
    case = scenario(POSTED)
    path = tmp_path / "bars.csv"
    write_bars(path, case.bars)
    report = import_prices_file(migrated_db, path, "1m")
    assert report.ok and report.inserted == len(case.bars)
    return migrated_db, case


def add_post(url: str, text: str, published: datetime | None = POSTED, source: str = "truth") -> int:
    with session_scope(url) as session:
        content = Content(
            source=source, external_id=f"p{text[:20]}{published}", text=text, published_at=published
        )
        session.add(content)
        session.flush()
        return content.id


def test_a_classified_post_reacts_with_the_planted_move(priced, classifier, monkeypatch) -> None:
    url, case = priced
    monkeypatch.setenv("DATABASE_URL", url)
    config = load_settings({"DATABASE_URL": url})
    identity = database_id(url)
    post = add_post(url, "The Stock Market is at an ALL TIME HIGH!")
    (classified,) = classify_contents([(post, identity)], url, config=config)
    assert classified.assets == ["SPY"]  # linked in the same job as the classification
    with session_scope(url) as session:
        assert session.get(ContentEntities, post) is not None
        (asset,) = session.scalars(select(ContentAsset).where(ContentAsset.content_id == post))
        assert (asset.symbol, asset.method) == ("SPY", "alias")

    (outcome,) = react_contents([(post, identity)], url, config=config)
    assert outcome.status == REACTED and outcome.reactions == {"ok": 3}
    expected = case.expected_z()
    with session_scope(url) as session:
        rows = {
            row.window: row for row in session.scalars(select(Reaction).where(Reaction.content_id == post))
        }
        (path,) = session.scalars(select(ReactionPath).where(ReactionPath.content_id == post))
    assert set(rows) == {"1h", "4h", "1d"}
    for row in rows.values():
        assert row.status == "ok" and row.symbol == "SPY" and row.market_open is True
        assert row.z_score == pytest.approx(expected, rel=1e-9) and row.significance == "p<0.01"
        assert row.record["complete"] is True and row.isolation == 1.0
    assert path.path["symbol"] == "SPY" and len(path.path["car"]) == len(path.path["minutes"])

    # Again: the same rows, replaced whole (never doubled).
    react_contents([(post, identity)], url, config=config)
    with session_scope(url) as session:
        assert len(list(session.scalars(select(Reaction).where(Reaction.content_id == post)))) == 3


def test_posts_that_cannot_react_are_skipped_with_why(priced, classifier) -> None:
    url, _ = priced
    config = load_settings({"DATABASE_URL": url})
    identity = database_id(url)
    undated = add_post(url, "Oil prices surge", published=None)
    unlinked = add_post(url, "Shares fall")
    classify_contents([(undated, identity)], url, config=config)
    outcomes = react_contents(
        [(undated, identity), (unlinked, identity), (987654, identity)], url, config=config
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        (SKIPPED, NO_PUBLICATION_TIME),
        (SKIPPED, NO_ENTITIES),
        (SKIPPED, CONTENT_NOT_FOUND),
    ]
    with session_scope(url) as session:
        assert session.scalars(select(Reaction)).first() is None


def test_reactions_are_enqueued_after_classification_and_when_due(priced, classifier) -> None:
    url, _ = priced
    config = load_settings({"DATABASE_URL": url})
    identity = database_id(url)
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    queue = Queue(config.queue_name, connection=connection, serializer=JSONSerializer)
    first, second = add_post(url, "Apple $AAPL beats"), add_post(url, "Tesla shares plunge")
    outcomes = classify_contents([(first, identity), (second, identity)], url, config=config)
    after_classification(connection, config, outcomes)
    assert queue.job_ids == [react_job_id_for(first, identity), react_job_id_for(second, identity)]
    job = queue.fetch_job(react_job_id_for(first, identity))
    assert (job.func_name, job.args) == ("jobs.react.react_content", [first, identity])

    with session_scope(url) as session:
        assert reactions_due(session) == [first, second]  # none computed yet
    react_contents([(first, identity), (second, identity)], url, config=config)
    with session_scope(url) as session:
        assert reactions_due(session) == []
    # An import after they were computed that covers them makes them due again.
    record_import(url, ["SPY"], POSTED, POSTED, 10)
    with session_scope(url) as session:
        assert reactions_due(session) == [first, second]
    assert json.loads(json.dumps(outcomes[0].as_result()))["assets"]


def test_an_import_that_lands_while_a_reaction_is_computed_makes_it_due_again(
    migrated_db: str, tmp_path: Path, classifier, monkeypatch
) -> None:
    """The job reads the bars, then an import lands (its bars committed, the import recorded), then the
    job stores what it read: that reaction predates the import, so the sweep must find it due."""
    import jobs.react

    url = migrated_db
    config = load_settings({"DATABASE_URL": url})
    identity = database_id(url)
    case = scenario(POSTED)
    session_close = datetime(2025, 6, 10, 20, 0, tzinfo=UTC).timestamp()
    earlier, later = tmp_path / "earlier.csv", tmp_path / "later.csv"
    write_bars(earlier, [bar for bar in case.bars if bar.start < session_close])
    write_bars(later, [bar for bar in case.bars if bar.start >= session_close])
    assert import_prices_file(url, earlier, "1m").ok
    post = add_post(url, "The Stock Market is at an ALL TIME HIGH!")
    classify_contents([(post, identity)], url, config=config)

    store = jobs.react._store

    def store_after_an_import(*args, **kwargs):
        report = import_prices_file(url, later, "1m")
        assert report.ok and report.inserted
        record_import(url, sorted(report.symbols), report.first_ts, report.last_ts, report.inserted)
        return store(*args, **kwargs)

    monkeypatch.setattr(jobs.react, "_store", store_after_an_import)
    (outcome,) = react_contents([(post, identity)], url, config=config)
    assert outcome.reactions == {"ok": 2, "awaiting_prices": 1}  # the 1d window read before the import
    with session_scope(url) as session:
        assert reactions_due(session) == [post]

    monkeypatch.setattr(jobs.react, "_store", store)  # the sweep's job, after the import
    (outcome,) = react_contents([(post, identity)], url, config=config)
    assert outcome.reactions == {"ok": 3}
    if url.startswith("postgresql"):  # SQLite counts whole seconds: one so close to the import is due again
        with session_scope(url) as session:
            assert reactions_due(session) == []


def test_a_post_is_due_for_its_own_reaction_older_than_an_import_not_another_posts(
    priced, classifier
) -> None:
    url, _ = priced
    config = load_settings({"DATABASE_URL": url})
    identity = database_id(url)
    covered = add_post(url, "Apple $AAPL beats")
    elsewhere = add_post(url, "Tesla shares plunge", published=datetime(2020, 1, 6, 15, 0, tzinfo=UTC))
    classify_contents([(covered, identity), (elsewhere, identity)], url, config=config)
    react_contents([(covered, identity), (elsewhere, identity)], url, config=config)
    record_import(url, ["SPY"], POSTED, POSTED, 10)  # covers posts from a week before POSTED on

    def computed(content_id: int, year: int) -> None:
        with session_scope(url) as session:
            session.execute(
                update(Reaction)
                .where(Reaction.content_id == content_id)
                .values(computed_at=datetime(year, 1, 1, tzinfo=UTC))
            )

    computed(elsewhere, 2000)  # long before the import, but the import does not cover it
    computed(covered, 2100)  # after the import
    with session_scope(url) as session:
        assert reactions_due(session) == []
    computed(covered, 2000)
    with session_scope(url) as session:
        assert reactions_due(session) == [covered]
