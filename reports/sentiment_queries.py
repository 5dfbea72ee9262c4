"""The sentiment picture's reads: plain functions of a session, aggregated in the database.

A post's time is its ``published_at``, else its ``created_at`` (when it was imported); its day is
that time's UTC date, as ``YYYY-MM-DD`` text, computed by the database (``utc_day``), so that grouping
and the ``since``/``until`` filters agree on it. A post counts once, with its consensus (``consensus``:
with one model, that model's reading): its sentiment, confidence and margin, and its signed score
``scores.positive - scores.negative`` (None where either is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, String, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.functions import FunctionElement

from db.models import Classification, Consensus, Content
from model.visible_text import visible_text
from reports.selection import Selection

#: authors offered in the page's author field (the most frequent first).
AUTHOR_CHOICES = 200


class utc_day(FunctionElement[str]):
    """SQL: the UTC date of a timestamp as ``YYYY-MM-DD`` text (SQLite stores UTC wall-clock text)."""

    type = String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


class whole_part(FunctionElement[int]):
    """SQL: the whole part of a non-negative number (PostgreSQL rounds on a cast to integer)."""

    type = Integer()
    inherit_cache = True


@compiles(whole_part, "sqlite")
def _whole_part_sqlite(element: whole_part, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


@compiles(whole_part, "postgresql")
def _whole_part_postgresql(element: whole_part, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


def post_time() -> ColumnElement[Any]:
    """SQL for a post's time: published when known, else imported."""
    return func.coalesce(Content.published_at, Content.created_at)


def post_day() -> ColumnElement[str]:
    """SQL for a post's UTC day (``YYYY-MM-DD``)."""
    return utc_day(post_time())


def signed_score() -> ColumnElement[float]:
    """SQL for a consensus's positive minus negative probability (NULL when its scores lack one)."""
    scores = Consensus.scores
    return scores["positive"].as_float() - scores["negative"].as_float()


def _selected(statement: Select[Any], selection: Selection, base: Any = Consensus) -> Select[Any]:
    """``statement`` over ``base`` (the consensus, or the classifications) joined to their contents,
    narrowed to ``selection``."""
    return narrowed(statement.select_from(base).join(Content, Content.id == base.content_id), selection)


def narrowed(statement: Select[Any], selection: Selection) -> Select[Any]:
    """``statement``, which reads ``contents``, kept to the posts of ``selection``."""
    if selection.source is not None:
        statement = statement.where(Content.source == selection.source)
    if selection.author is not None:
        statement = statement.where(Content.author == selection.author)
    if selection.since is not None:
        statement = statement.where(post_day() >= selection.since.isoformat())
    if selection.until is not None:
        statement = statement.where(post_day() <= selection.until.isoformat())
    return statement


@dataclass(frozen=True)
class DaySentiment:
    """The classified posts of one day and one sentiment."""

    day: date
    sentiment: str
    posts: int
    #: posts whose signed score is known (their raw scores hold positive and negative).
    scored: int
    #: the sum of their signed scores.
    signed_sum: float


def day_sentiments(session: Session, selection: Selection) -> list[DaySentiment]:
    """Classified posts per day and sentiment, with the sum of their signed scores, oldest day first."""
    day, score = post_day(), signed_score()
    rows = session.execute(
        _selected(
            select(day, Consensus.sentiment, func.count(), func.count(score), func.sum(score)), selection
        )
        .group_by(day, Consensus.sentiment)
        .order_by(day, Consensus.sentiment)
    )
    return [
        DaySentiment(date.fromisoformat(d), sentiment, posts, scored, float(total or 0.0))
        for d, sentiment, posts, scored, total in rows
    ]


def score_bins(
    session: Session, selection: Selection, score: ColumnElement[float], bins: int
) -> dict[tuple[int, str], int]:
    """Posts per (bin, sentiment) for ``score`` (a value in [0, 1]) cut into ``bins`` equal bins; 1.0
    falls in the last bin; rows whose score is NULL are left out."""
    index = whole_part(score * bins)
    rows = session.execute(
        _selected(select(index, Consensus.sentiment, func.count()), selection)
        .where(score.is_not(None))
        .group_by(index, Consensus.sentiment)
    )
    counts: dict[tuple[int, str], int] = {}
    for raw_bin, sentiment, posts in rows:
        key = (min(max(int(raw_bin), 0), bins - 1), sentiment)
        counts[key] = counts.get(key, 0) + posts
    return counts


def confidence_bins(session: Session, selection: Selection, bins: int) -> dict[tuple[int, str], int]:
    return score_bins(session, selection, Consensus.confidence, bins)


def margin_bins(session: Session, selection: Selection, bins: int) -> dict[tuple[int, str], int]:
    """Bins of the consensus's margin between its two best scores."""
    return score_bins(session, selection, Consensus.margin, bins)


@dataclass(frozen=True)
class ScoredPost:
    """One classified post with its signed score, for the lists of extremes."""

    content_id: int
    source: str
    author: str | None
    day: date
    sentiment: str
    confidence: float
    signed: float
    text: str


def extreme_posts(
    session: Session, selection: Selection, first_day: date, limit: int, most: str
) -> list[ScoredPost]:
    """The ``limit`` posts from ``first_day`` on with the lowest (``most="negative"``) or highest
    (``most="positive"``) signed score, below or above zero only; ties by content id. Each post's text is
    its visible text, the words the model read (a Truth Social post's markup is not shown as text)."""
    score, day = signed_score(), post_day()
    statement = _selected(
        select(
            Content.id,
            Content.source,
            Content.author,
            day,
            Consensus.sentiment,
            Consensus.confidence,
            score,
            Content.text,
        ),
        selection,
    ).where(day >= first_day.isoformat())
    if most == "negative":
        statement = statement.where(score < 0).order_by(score, Content.id)
    elif most == "positive":
        statement = statement.where(score > 0).order_by(score.desc(), Content.id)
    else:
        raise ValueError(f"most must be 'negative' or 'positive', not {most!r}")
    return [
        ScoredPost(
            cid,
            source,
            author,
            date.fromisoformat(d),
            sentiment,
            confidence,
            float(signed),
            visible_text(text),
        )
        for cid, source, author, d, sentiment, confidence, signed, text in session.execute(
            statement.limit(limit)
        )
    ]


def undated_posts(session: Session, selection: Selection) -> int:
    """Classified posts in ``selection`` without ``published_at`` (placed on the day they were imported)."""
    return (
        session.scalar(_selected(select(func.count()), selection).where(Content.published_at.is_(None))) or 0
    )


def model_versions_in(session: Session, selection: Selection) -> dict[str, int]:
    """Classifications per ``model_version`` in ``selection``."""
    rows = session.execute(
        _selected(select(Classification.model_version, func.count()), selection, Classification).group_by(
            Classification.model_version
        )
    )
    return {version: count for version, count in rows}


def model_sentiments_in(session: Session, selection: Selection) -> dict[str, dict[str, int]]:
    """Per model name: its classifications in ``selection`` per sentiment."""
    rows = session.execute(
        _selected(
            select(Classification.model, Classification.sentiment, func.count()), selection, Classification
        ).group_by(Classification.model, Classification.sentiment)
    )
    found: dict[str, dict[str, int]] = {}
    for model, sentiment, count in rows:
        found.setdefault(model, {})[sentiment] = count
    return found


def joint_labels_in(
    session: Session, selection: Selection, first: str, second: str
) -> dict[tuple[str, str], int]:
    """Posts in ``selection`` per (``first``'s label, ``second``'s label), over those both models classified."""
    other = aliased(Classification)
    rows = session.execute(
        _selected(select(Classification.sentiment, other.sentiment, func.count()), selection, Classification)
        .join(other, other.content_id == Classification.content_id)
        .where(Classification.model == first, other.model == second)
        .group_by(Classification.sentiment, other.sentiment)
    )
    return {(a, b): count for a, b, count in rows}


def ambiguous_in(session: Session, selection: Selection, limit: int) -> list[tuple[Consensus, Content]]:
    """The ambiguous posts of ``selection``, least confident first."""
    statement = (
        _selected(select(Consensus, Content), selection)
        .where(Consensus.ambiguous.is_(True))
        .order_by(Consensus.confidence, Consensus.content_id)
        .limit(limit)
    )
    return [(consensus, content) for consensus, content in session.execute(statement)]


def ambiguous_count_in(session: Session, selection: Selection) -> int:
    return (
        session.scalar(_selected(select(func.count()), selection).where(Consensus.ambiguous.is_(True))) or 0
    )


def classification_total(session: Session) -> int:
    """Classified posts (with a consensus) in the whole database (to tell "nothing yet" from "nothing matches")."""
    return session.scalar(select(func.count()).select_from(Consensus)) or 0


def sources(session: Session) -> list[str]:
    """The sources of classified posts, by name."""
    statement = _selected(select(Content.source).distinct(), Selection()).order_by(Content.source)
    return list(session.scalars(statement))


def frequent_authors(session: Session, limit: int = AUTHOR_CHOICES) -> list[str]:
    """The authors of the most classified posts, most first (ties by name)."""
    count = func.count()
    statement = (
        _selected(select(Content.author, count), Selection())
        .where(Content.author.is_not(None))
        .group_by(Content.author)
        .order_by(count.desc(), Content.author)
        .limit(limit)
    )
    return [author for author, _ in session.execute(statement)]
