"""Writing a classification: one row per content, however often a job runs."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Classification, Content

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def record_skip(session: Session, content_id: int, reason: str) -> None:
    """Remember that ``content_id`` was skipped for good, so that sweeps pass over it."""
    session.execute(update(Content).where(Content.id == content_id).values(skip_reason=reason))


def save_classification(
    session: Session,
    content_id: int,
    sentiment: str,
    confidence: float,
    model_version: str,
    raw_scores: dict[str, float],
) -> bool:
    """Insert the classification unless one exists, and mark the content classified.

    Returns False when a classification was already there (another run won): nothing is written then
    but the flag. Both statements run in the caller's transaction.
    """
    insert = _INSERTS[session.get_bind().dialect.name]
    statement = (
        insert(Classification)
        .values(
            content_id=content_id,
            sentiment=sentiment,
            confidence=confidence,
            model_version=model_version,
            meta={"raw_scores": raw_scores},
        )
        .on_conflict_do_nothing(index_elements=["content_id"])
        .returning(Classification.id)
    )
    # A returned id, not rowcount: with implicit RETURNING on PostgreSQL, rowcount is -1.
    inserted = session.execute(statement).first() is not None
    session.execute(update(Content).where(Content.id == content_id).values(classified=True))
    return inserted
