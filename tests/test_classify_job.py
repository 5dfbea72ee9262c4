"""jobs.classify with the tiny model, on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

import config
import jobs.classify
from db import queries
from db.identity import database_id
from db.models import SENTIMENTS, Classification, Consensus, Content
from db.session import session_scope
from jobs.classify import ClassificationFailed, JobRefused, classify_content, classify_contents
from jobs.failures import InfrastructureUnavailable
from jobs.outcomes import (
    ALREADY_CLASSIFIED,
    CLASSIFIED,
    CONTENT_NOT_FOUND,
    FAILED,
    NO_TEXT_TO_CLASSIFY,
    REFUSED,
    SKIPPED,
    WRONG_DATABASE,
    Outcome,
)
from model.visible_text import visible_text
from tests.rows import store_classification

MISSING_ID = 987654
#: the identity of a database other than the test's.
OTHER_DATABASE = "9f8e7d6c5b"
_external_ids = itertools.count()

EMPTY_TEXTS = {
    "empty": "",
    "whitespace": " \n\t  \r\n",
    "markup": "<p><br/></p><div>  </div><img src='chart.png'><script>buy()</script>",
    "links": "https://example.com/a www.example.org http://t.co/x",
    "linked links": "<a href='https://example.com'>https://example.com</a>",
}


@pytest.fixture
def db_url(migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The migrated database, also as DATABASE_URL (the RQ job reads the process settings)."""
    monkeypatch.setenv("DATABASE_URL", migrated_db)
    config.settings.cache_clear()
    yield migrated_db
    config.settings.cache_clear()


@pytest.fixture
def ident(db_url: str) -> str:
    """The identity of the test's database: what its jobs carry."""
    return database_id(db_url)


def requests(ident: str, *content_ids: int) -> list[tuple[int, str]]:
    return [(content_id, ident) for content_id in content_ids]


def add(url: str, *texts: str, classified: bool = False) -> list[int]:
    with session_scope(url) as session:
        contents = [
            Content(source="test", external_id=f"e{next(_external_ids)}", text=text) for text in texts
        ]
        session.add_all(contents)
        session.flush()
        ids = [content.id for content in contents]
    for content_id in ids if classified else ():
        mark_classified(url, content_id)
    return ids


def mark_classified(url: str, content_id: int, version: str = "earlier") -> None:
    """Give the content a classification by the default model, as an earlier job would have."""
    with session_scope(url) as session:
        store_classification(session, content_id, "neutral", 0.5, version, {"neutral": 0.5, "positive": 0.3,
                             "negative": 0.2})  # fmt: skip


def rows_for(url: str, content_id: int) -> list[Classification]:
    with session_scope(url) as session:
        return list(session.scalars(select(Classification).where(Classification.content_id == content_id)))


def flag(url: str, content_id: int) -> bool:
    """Classified: a current classification by the (one) configured model, and a consensus."""
    with session_scope(url) as session:
        return bool(session.get(Content, content_id).classifications) and (
            session.get(Consensus, content_id) is not None
        )


def total_classifications(url: str) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(Classification))


# -- skips ---------------------------------------------------------------------------------------


def test_missing_content_is_skipped(db_url: str, ident: str, classifier) -> None:
    assert classify_content(MISSING_ID, ident) == {
        "content_id": MISSING_ID,
        "status": SKIPPED,
        "reason": CONTENT_NOT_FOUND,
    }
    assert total_classifications(db_url) == 0


@pytest.mark.parametrize("kind", sorted(EMPTY_TEXTS))
def test_content_without_visible_text_is_skipped(db_url: str, ident: str, classifier, kind: str) -> None:
    (content_id,) = add(db_url, EMPTY_TEXTS[kind])
    assert visible_text(EMPTY_TEXTS[kind]) == ""
    assert classify_content(content_id, ident) == {
        "content_id": content_id,
        "status": SKIPPED,
        "reason": NO_TEXT_TO_CLASSIFY,
    }
    assert rows_for(db_url, content_id) == []
    # A skip is an outcome, not a classification: the content has none, but the skip is remembered so
    # that sweeps do not enqueue it again.
    assert flag(db_url, content_id) is False
    with session_scope(db_url) as session:
        assert session.get(Content, content_id).skip_reason == NO_TEXT_TO_CLASSIFY
        assert queries.unclassified_ids(session) == []
        assert queries.content_counts(session).skipped == 1


def test_already_classified_content_is_skipped(db_url: str, ident: str, classifier) -> None:
    (content_id,) = add(db_url, "Stocks rally", classified=True)
    assert classify_content(content_id, ident) == {
        "content_id": content_id,
        "status": SKIPPED,
        "reason": ALREADY_CLASSIFIED,
    }
    (row,) = rows_for(db_url, content_id)
    assert row.model_version == "earlier"
    with session_scope(db_url) as session:
        assert session.get(Content, content_id).skip_reason is None


def test_skips_need_no_model(db_url: str, ident: str) -> None:
    """With nothing to classify the model is never loaded (no classifier is installed here)."""
    (empty,) = add(db_url, "   ")
    outcomes = classify_contents(requests(ident, MISSING_ID, empty), db_url)
    assert [outcome.reason for outcome in outcomes] == [CONTENT_NOT_FOUND, NO_TEXT_TO_CLASSIFY]


# -- jobs of another database, and bad arguments -------------------------------------------------


def test_a_job_of_another_database_is_refused_and_touches_nothing(db_url: str, ident: str) -> None:
    """Content 1 exists here, but the job was enqueued for another database's content 1: never run here.

    No classifier is installed: a refusal reads no text and loads no model."""
    (content_id,) = add(db_url, "Stocks rally on strong earnings")
    empty, done = add(db_url, "", "x", classified=False)
    mark_classified(db_url, done)

    outcomes = classify_contents(requests(OTHER_DATABASE, content_id, empty, done, MISSING_ID), db_url)

    why = f"enqueued for database {OTHER_DATABASE}, this worker's database is {ident}"
    assert outcomes == [
        Outcome.refused(content_id, WRONG_DATABASE, why),
        Outcome.refused(empty, WRONG_DATABASE, why),
        Outcome.refused(done, WRONG_DATABASE, why),
        Outcome.refused(MISSING_ID, WRONG_DATABASE, why),
    ]
    assert all(outcome.status == REFUSED for outcome in outcomes)
    # Nothing here changed: no new row, no skip recorded (not even for the empty post).
    assert total_classifications(db_url) == 1
    with session_scope(db_url) as session:
        assert session.get(Content, empty).skip_reason is None
        assert queries.unclassified_ids(session) == [content_id, empty]
    # The RQ job raises: it ends failed (never retried), with the reason.
    with pytest.raises(JobRefused, match=f"enqueued for database {OTHER_DATABASE}"):
        classify_content(content_id, OTHER_DATABASE)
    assert total_classifications(db_url) == 1


def test_a_batch_of_two_databases_runs_only_its_own(db_url: str, ident: str, classifier) -> None:
    ours, theirs = add(db_url, "Stocks rally", "Shares fall")
    outcomes = classify_contents([(ours, ident), (theirs, OTHER_DATABASE), (ours, OTHER_DATABASE)], db_url)
    assert [(outcome.content_id, outcome.status) for outcome in outcomes] == [
        (ours, CLASSIFIED),
        (theirs, REFUSED),
        (ours, REFUSED),
    ]
    assert len(rows_for(db_url, ours)) == 1
    assert rows_for(db_url, theirs) == [] and flag(db_url, theirs) is False


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["7", "0a1b2c3d4e"], "content id '7' is not a whole number >= 1"),
        ([0, "0a1b2c3d4e"], "content id 0 is not a whole number >= 1"),
        ([True, "0a1b2c3d4e"], "content id True is not a whole number >= 1"),
        ([7, "../../etc"], "database id '../../etc' is not a database identity"),
        ([7, 12345], "database id '12345' is not a database identity"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_read(db_url: str, args: list, problem: str) -> None:
    """The job's arguments come from Redis: an id as text (which the old job accepted) is refused now."""
    (content_id,) = add(db_url, "Shares fall")
    with pytest.raises(JobRefused) as refused:
        classify_content(*args)
    assert str(refused.value) == problem
    assert rows_for(db_url, content_id) == [] and total_classifications(db_url) == 0


# -- classification ------------------------------------------------------------------------------


def test_classify_content_stores_one_valid_classification(db_url: str, ident: str, classifier) -> None:
    raw = "<p>Stocks <b>rally</b> on strong earnings</p> https://news.example/1 <script>track()</script>"
    (content_id,) = add(db_url, raw)
    result = classify_content(content_id, ident)

    (expected,) = classifier.classify(["Stocks rally on strong earnings"])  # what the model reads
    assert result == {
        "content_id": content_id,
        "status": CLASSIFIED,
        "sentiment": expected.sentiment,
        "confidence": pytest.approx(expected.confidence, abs=1e-6),
        "model_version": classifier.model_version,
        "assets": ["SPY"],  # names no asset: the default market link
    }
    (row,) = rows_for(db_url, content_id)
    assert row.sentiment in SENTIMENTS
    assert row.sentiment == expected.sentiment
    assert 0.0 <= row.confidence <= 1.0
    assert row.confidence == pytest.approx(expected.confidence, abs=1e-6)
    assert row.model_version == classifier.model_version
    assert row.model_version.endswith("+fp32")
    scores = row.meta["raw_scores"]
    assert set(scores) == set(classifier.labels)
    assert max(scores, key=scores.get) == row.sentiment
    assert scores[row.sentiment] == pytest.approx(row.confidence)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert flag(db_url, content_id) is True


def test_running_twice_leaves_one_row(db_url: str, ident: str, classifier) -> None:
    (content_id,) = add(db_url, "Oil prices surge")
    first = classify_content(content_id, ident)
    assert first["status"] == CLASSIFIED
    (row,) = rows_for(db_url, content_id)
    second = classify_content(content_id, ident)
    assert second == {"content_id": content_id, "status": SKIPPED, "reason": ALREADY_CLASSIFIED}
    (again,) = rows_for(db_url, content_id)
    assert (again.id, again.sentiment, again.confidence) == (row.id, row.sentiment, row.confidence)


def test_classified_by_another_session_first(db_url: str, ident: str, classifier) -> None:
    (content_id,) = add(db_url, "Fed hikes rates")
    mark_classified(db_url, content_id, "other-worker")
    assert classify_contents(requests(ident, content_id), db_url) == [
        Outcome.skipped(content_id, ALREADY_CLASSIFIED)
    ]
    (row,) = rows_for(db_url, content_id)
    assert (row.model_version, row.sentiment) == ("other-worker", "neutral")


def test_concurrent_duplicate_between_read_and_write(
    db_url: str, ident: str, classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker commits the same content after this job read it but before it writes."""
    content_id, neighbour = add(db_url, "Tesla shares plunge", "Apple beat revenue forecast")
    real_batch_save = jobs.classify.save_classifications

    def racing_batch_save(session, rows):
        assert {row.content_id for row in rows} == {content_id, neighbour}  # both read as unclassified
        with session_scope(db_url) as other:  # its own connection and transaction, committed first
            assert store_classification(other, content_id, "positive", 0.42, "other-worker", {}) is True
        return real_batch_save(session, rows)

    monkeypatch.setattr(jobs.classify, "save_classifications", racing_batch_save)
    outcomes = classify_contents(requests(ident, content_id, neighbour), db_url)
    assert outcomes[0] == Outcome.skipped(content_id, ALREADY_CLASSIFIED)
    assert outcomes[1].status == CLASSIFIED
    (row,) = rows_for(db_url, content_id)
    assert (row.model_version, row.confidence) == ("other-worker", 0.42)
    assert flag(db_url, content_id) is True
    assert len(rows_for(db_url, neighbour)) == 1


# -- the batch form ------------------------------------------------------------------------------


def test_batch_gives_one_outcome_per_distinct_request_in_order(db_url: str, ident: str, classifier) -> None:
    rally, empty, fall, done = add(db_url, "Stocks rally", "<br>", "Shares fall after weak guidance", "x")
    mark_classified(db_url, done)
    ids = [fall, MISSING_ID, rally, fall, empty, done, rally]
    outcomes = classify_contents(requests(ident, *ids), db_url)
    assert [outcome.content_id for outcome in outcomes] == [fall, MISSING_ID, rally, empty, done]
    assert [(outcome.status, outcome.reason) for outcome in outcomes] == [
        (CLASSIFIED, None),
        (SKIPPED, CONTENT_NOT_FOUND),
        (CLASSIFIED, None),
        (SKIPPED, NO_TEXT_TO_CLASSIFY),
        (SKIPPED, ALREADY_CLASSIFIED),
    ]
    expected = dict(
        zip(
            [fall, rally],
            classifier.classify(["Shares fall after weak guidance", "Stocks rally"]),
            strict=True,
        )
    )
    for outcome in outcomes:
        if outcome.status == CLASSIFIED:
            assert outcome.sentiment == expected[outcome.content_id].sentiment
            assert outcome.confidence == pytest.approx(expected[outcome.content_id].confidence, abs=1e-5)
            assert outcome.model_version == classifier.model_version
            assert len(rows_for(db_url, outcome.content_id)) == 1
    assert total_classifications(db_url) == 3  # done's earlier one, and two new
    with session_scope(db_url) as session:
        # The empty post is remembered as skipped for good: sweeps pass over it.
        assert session.get(Content, empty).skip_reason == NO_TEXT_TO_CLASSIFY
        assert queries.unclassified_ids(session) == []


def test_batch_of_nothing(db_url: str, classifier) -> None:
    assert classify_contents([], db_url) == []


def test_same_text_in_many_contents(db_url: str, ident: str, classifier) -> None:
    ids = add(db_url, "Markets surge", "<b>Markets</b> surge", "Markets   surge https://x.example")
    outcomes = classify_contents(requests(ident, *ids), db_url)
    assert [outcome.status for outcome in outcomes] == [CLASSIFIED] * 3
    assert len({(outcome.sentiment, outcome.confidence) for outcome in outcomes}) == 1
    assert total_classifications(db_url) == 3


def break_store_for(monkeypatch: pytest.MonkeyPatch, broken: int) -> None:
    """Make storing ``broken``'s classification fail, in the batch write and in the one-by-one write."""
    real_batch_save = jobs.classify.save_classifications

    def failing_batch_save(session, rows):
        inserted = real_batch_save(session, rows)  # written, then rolled back
        if any(row.content_id == broken for row in rows):
            raise RuntimeError("disk full")
        return inserted

    monkeypatch.setattr(jobs.classify, "save_classifications", failing_batch_save)


def test_a_store_failure_fails_only_that_content(
    db_url: str, ident: str, classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, broken, after = add(db_url, "Stocks rally", "Shares fall", "Oil prices surge")
    break_store_for(monkeypatch, broken)
    outcomes = classify_contents(requests(ident, before, broken, after), db_url)
    assert [outcome.status for outcome in outcomes] == [CLASSIFIED, FAILED, CLASSIFIED]
    failed = outcomes[1]
    assert failed.content_id == broken
    assert failed.error == "disk full"
    assert failed.as_result() == {"content_id": broken, "status": FAILED, "error": "disk full"}
    # Its own transaction was rolled back; the neighbours' were committed.
    assert rows_for(db_url, broken) == []
    assert flag(db_url, broken) is False
    assert len(rows_for(db_url, before)) == 1 and len(rows_for(db_url, after)) == 1
    assert flag(db_url, before) is True and flag(db_url, after) is True
    assert total_classifications(db_url) == 2


def test_a_content_deleted_before_the_write_fails_alone(
    db_url: str, ident: str, classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real database error for one row (foreign key), not a mock: the batch falls back to one by one."""
    before, deleted, after = add(db_url, "Stocks rally", "Shares fall", "Oil prices surge")
    real_lock = jobs.classify.lock_contents

    def delete_then_lock(session, content_ids):
        """The write transaction begins: another session deletes the post just before it locks its posts."""
        with session_scope(db_url) as other:
            if other.get(Content, deleted) is not None:
                other.delete(other.get(Content, deleted))
        real_lock(session, content_ids)

    monkeypatch.setattr(jobs.classify, "lock_contents", delete_then_lock)
    outcomes = classify_contents(requests(ident, before, deleted, after), db_url)
    assert [outcome.status for outcome in outcomes] == [CLASSIFIED, FAILED, CLASSIFIED]
    assert outcomes[1].error is not None
    assert any(word in outcomes[1].error.lower() for word in ("foreign key", "violates")), outcomes[1].error
    assert rows_for(db_url, deleted) == []
    assert len(rows_for(db_url, before)) == 1 and len(rows_for(db_url, after)) == 1


def test_the_rq_job_raises_the_posts_own_failure_so_that_rq_retries_it(
    db_url: str, ident: str, classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old ``raise_errors=True`` is gone: the batch stores its neighbours, and the job of the failing
    post raises ClassificationFailed (retried by RQ, then failed); a retry once the store works succeeds."""
    before, broken, after = add(db_url, "Stocks rally", "Shares fall", "Oil prices surge")
    break_store_for(monkeypatch, broken)
    with pytest.raises(ClassificationFailed, match=r"^disk full$"):
        classify_content(broken, ident)
    assert rows_for(db_url, broken) == [] and flag(db_url, broken) is False
    assert classify_content(before, ident)["status"] == CLASSIFIED  # its neighbours are unaffected
    # ...and a retry once the store works again classifies it.
    monkeypatch.undo()
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert classify_content(broken, ident)["status"] == CLASSIFIED
    assert len(rows_for(db_url, broken)) == 1
    assert rows_for(db_url, after) == []
    assert total_classifications(db_url) == 2


def test_an_unreachable_database_raises_infrastructure_unavailable(ident: str) -> None:
    """Nothing is decided about the posts: the worker hands their jobs back (no attempt used)."""
    from services.redis_server import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(InfrastructureUnavailable) as raised:
        classify_contents(requests(ident, 1, 2), url)
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and "127.0.0.1" in message, message
    assert "sqlalche.me" not in message


def test_a_result_holds_every_field_that_says_something_as_json_reads_it() -> None:
    from jobs.outcomes import Outcome

    outcome = Outcome(
        7,
        CLASSIFIED,
        sentiment="positive",
        confidence=0.9,
        model_version="m@1",
        models={"finbert": {"sentiment": "positive", "confidence": 0.9}},
        consensus={"agreement": 1.0, "dissent": []},
        assets=["SPY"],
    )
    assert outcome.as_result() == {
        "content_id": 7,
        "status": CLASSIFIED,
        "sentiment": "positive",
        "confidence": 0.9,
        "model_version": "m@1",
        "models": {"finbert": {"sentiment": "positive", "confidence": 0.9}},
        "consensus": {"agreement": 1.0, "dissent": []},
        "assets": ["SPY"],
    }
    assert Outcome.skipped(8, "no_text_to_classify").as_result() == {
        "content_id": 8,
        "status": "skipped",
        "reason": "no_text_to_classify",
    }
