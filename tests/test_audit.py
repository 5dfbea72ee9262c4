"""The audit in every classification's meta, and the report's share of uncertain classifications.

Real tiny model, SQLite and PostgreSQL (the margin is read out of JSON / JSONB by SQL).
"""

from __future__ import annotations

import hashlib
import math

import pytest
from sqlalchemy import select

from db.identity import database_id
from db.models import Classification, Content
from db.queries import count_below_margin, uncertain_classifications
from db.session import session_scope
from jobs.audit import LOW_MARGIN, entropy, margin
from jobs.classify import classify_contents
from jobs.outcomes import CLASSIFIED

SHORT = "Stocks rally on strong earnings"
#: longer than the tiny model's 128 positions: read in windows.
LONG = "The market was strong. Investors are bullish on growth. " * 30


def add(url: str, text: str, external_id: str) -> int:
    with session_scope(url) as session:
        content = Content(source="test", external_id=external_id, text=text)
        session.add(content)
        session.flush()
        return content.id


def meta_of(url: str, content_id: int) -> dict:
    with session_scope(url) as session:
        return session.scalar(select(Classification.meta).where(Classification.content_id == content_id))


def test_margin_and_entropy() -> None:
    assert margin({"a": 0.7, "b": 0.2, "c": 0.1}) == pytest.approx(0.5)
    assert entropy({"a": 1.0, "b": 0.0}) == 0.0
    assert entropy({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}) == pytest.approx(math.log(3))


def test_every_classification_carries_its_audit(migrated_db: str, classifier) -> None:
    url = migrated_db
    short_id, long_id = add(url, SHORT, "s"), add(url, f"<p>{LONG}</p>", "l")
    identity = database_id(url)
    outcomes = classify_contents(
        [(short_id, identity), (long_id, identity)], url, attempts={(long_id, identity): 2}, worker="w-1"
    )
    assert [outcome.status for outcome in outcomes] == [CLASSIFIED, CLASSIFIED]

    short = meta_of(url, short_id)
    assert set(short) == {"raw_scores", "text", "quality", "processing"}
    assert short["text"]["characters"] == len(SHORT) == short["text"]["input_characters"]
    assert short["text"]["windows"] == 1
    assert short["text"]["tokens"] == len(classifier.tokenizer(SHORT, add_special_tokens=False)["input_ids"])
    assert short["text"]["sha256"] == hashlib.sha256(SHORT.encode()).hexdigest()
    assert (
        short["text"]["cut"] is False and short["text"]["quote"] is False and short["text"]["repost"] is False
    )
    assert short["quality"]["margin"] == pytest.approx(margin(short["raw_scores"]), abs=1e-6)
    assert short["quality"]["entropy"] == pytest.approx(entropy(short["raw_scores"]), abs=1e-6)
    processing = short["processing"]
    assert processing["attempt"] == 1 and processing["worker"] == "w-1"
    assert processing["engine"] == "torch" and processing["precision"] == "fp32"
    assert processing["model_version"] == classifier.model_version
    assert processing["model_seconds"] > 0
    assert processing["classified_at"].endswith("+00:00")

    long = meta_of(url, long_id)
    visible = LONG.strip()
    assert long["text"]["windows"] >= 2
    assert long["text"]["characters"] == len(visible)
    assert long["text"]["input_characters"] == len(f"<p>{LONG}</p>")
    assert long["text"]["tokens"] == len(classifier.tokenizer(visible, add_special_tokens=False)["input_ids"])
    assert long["processing"]["attempt"] == 2


def test_uncertain_classifications_are_counted_and_listed(migrated_db: str, classifier) -> None:
    url = migrated_db
    texts = [SHORT, "Shares fall after weak guidance", "inflation", "a", "$TSLA up", "profit loss", "rates"]
    ids = [add(url, text, f"u{index}") for index, text in enumerate(texts)]
    identity = database_id(url)
    classify_contents([(content_id, identity) for content_id in ids], url)
    margins = {content_id: meta_of(url, content_id)["quality"]["margin"] for content_id in ids}
    threshold = sorted(margins.values())[3]  # three below it, whatever the random model says
    with session_scope(url) as session:
        uncertain, audited = count_below_margin(session, threshold)
        listed = uncertain_classifications(session, threshold, limit=None)
    assert audited == len(ids)
    assert uncertain == sum(1 for value in margins.values() if value < threshold) == 3
    assert [content.id for _classification, content in listed] == sorted(
        (content_id for content_id, value in margins.items() if value < threshold), key=margins.get
    )
    assert 0 < LOW_MARGIN < 1


def test_quotes_reposts_and_cut_posts_are_recorded(migrated_db: str, classifier) -> None:
    from model.visible_text import MAX_POST_CHARS

    url = migrated_db
    quote = (
        '<p>Great jobs numbers!<span class="quote-inline"><br/>RT: https://truthsocial.com/@x/123</span></p>'
    )
    repost = "RT @WhiteHouse: Stocks rally on strong earnings"
    huge = "Stocks rally. " * (MAX_POST_CHARS // 14 + 100)
    ids = [add(url, quote, "q"), add(url, repost, "r"), add(url, huge, "h")]
    identity = database_id(url)
    classify_contents([(content_id, identity) for content_id in ids], url)
    quoted, reposted, cut = (meta_of(url, content_id)["text"] for content_id in ids)
    assert quoted["quote"] is True and quoted["repost"] is False
    assert quoted["characters"] == len("Great jobs numbers!") and quoted["input_characters"] == len(quote)
    assert reposted["repost"] is True and reposted["quote"] is False
    assert cut["cut"] is True and cut["input_characters"] == len(huge)
    assert cut["characters"] <= MAX_POST_CHARS and cut["windows"] > 1
