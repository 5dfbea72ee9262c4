"""Read queries, each a plain function of a session."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import SENTIMENTS, Classification, Content


@dataclass(frozen=True)
class ContentCounts:
    total: int
    classified: int
    skipped: int

    @property
    def unclassified(self) -> int:
        """Contents still to classify (neither classified nor skipped)."""
        return self.total - self.classified - self.skipped


def unclassified_ids(session: Session, limit: int | None = None) -> list[int]:
    """Ids of contents not yet classified nor skipped for good, oldest first."""
    statement = (
        select(Content.id)
        .where(Content.classified.is_(False), Content.skip_reason.is_(None))
        .order_by(Content.id)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.scalars(statement))


def contents_by_id(session: Session, ids: Iterable[int]) -> dict[int, Content]:
    """The contents among ``ids`` that exist, by id."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    return {content.id: content for content in session.scalars(select(Content).where(Content.id.in_(wanted)))}


def classification_of(session: Session, content_id: int) -> Classification | None:
    return session.scalar(select(Classification).where(Classification.content_id == content_id))


def classifications_by_sentiment(
    session: Session, sentiment: str, limit: int | None = None
) -> list[Classification]:
    """Classifications with ``sentiment``, most confident first."""
    if sentiment not in SENTIMENTS:
        raise ValueError(f"sentiment must be one of {', '.join(SENTIMENTS)}, not {sentiment!r}")
    statement = (
        select(Classification)
        .where(Classification.sentiment == sentiment)
        .order_by(Classification.confidence.desc(), Classification.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def high_confidence(
    session: Session, threshold: float = 0.9, limit: int | None = None
) -> list[Classification]:
    """Classifications whose confidence is above ``threshold``, most confident first."""
    statement = (
        select(Classification)
        .where(Classification.confidence > threshold)
        .order_by(Classification.confidence.desc(), Classification.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def count_above(session: Session, threshold: float) -> int:
    return session.scalar(select(func.count()).where(Classification.confidence > threshold)) or 0


def sentiment_distribution(session: Session) -> dict[str, int]:
    """Classifications per sentiment, every sentiment present (0 when none)."""
    rows = session.execute(select(Classification.sentiment, func.count()).group_by(Classification.sentiment))
    counts = dict.fromkeys(SENTIMENTS, 0)
    counts.update({sentiment: count for sentiment, count in rows})
    return counts


def content_counts(session: Session) -> ContentCounts:
    total, classified, skipped = session.execute(
        select(
            func.count(),
            func.count().filter(Content.classified.is_(True)),
            func.count().filter(Content.classified.is_(False), Content.skip_reason.is_not(None)),
        ).select_from(Content)
    ).one()
    return ContentCounts(total=total, classified=classified, skipped=skipped)
