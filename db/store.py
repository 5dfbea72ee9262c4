"""Writing a classification: one row per content, however often a job runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Classification, Content

if TYPE_CHECKING:
    from workers.classifier import Prediction

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def record_skip(session: Session, content_id: int, reason: str) -> None:
    """Remember that ``content_id`` was skipped for good, so that sweeps pass over it."""
    session.execute(update(Content).where(Content.id == content_id).values(skip_reason=reason))


def _insert(session: Session, rows: list[dict]) -> set[int]:
    """Insert classification rows unless their content has one; mark the contents classified.

    Returns the content ids inserted: a returned id, not rowcount (-1 with RETURNING on PostgreSQL).
    """
    insert = _INSERTS[session.get_bind().dialect.name]
    statement = (
        insert(Classification)
        .on_conflict_do_nothing(index_elements=["content_id"])
        .returning(Classification.content_id)
    )
    inserted = set(session.scalars(statement, rows))
    content_ids = [row["content_id"] for row in rows]
    session.execute(update(Content).where(Content.id.in_(content_ids)).values(classified=True))
    return inserted


def save_classifications(
    session: Session,
    model_version: str,
    rows: dict[int, Prediction],
    metas: dict[int, dict[str, Any]] | None = None,
) -> set[int]:
    """Insert the classifications of many contents in one statement; return the content ids inserted.

    ``metas`` holds each classification's audit (``jobs.audit``); without one, ``meta`` holds the raw
    scores only. Contents that already had one keep it (ON CONFLICT DO NOTHING); all are marked
    classified.
    """
    if not rows:
        return set()
    metas = metas or {}
    return _insert(
        session,
        [
            {
                "content_id": content_id,
                "sentiment": prediction.sentiment,
                "confidence": prediction.confidence,
                "model_version": model_version,
                "meta": metas.get(content_id) or {"raw_scores": prediction.raw_scores},
            }
            for content_id, prediction in rows.items()
        ],
    )


def save_classification(
    session: Session,
    content_id: int,
    sentiment: str,
    confidence: float,
    model_version: str,
    raw_scores: dict[str, float],
    meta: dict[str, Any] | None = None,
) -> bool:
    """Insert the classification unless one exists, and mark the content classified.

    Returns False when a classification was already there (another run won): nothing is written then
    but the flag. Both statements run in the caller's transaction.
    """
    row = {
        "content_id": content_id,
        "sentiment": sentiment,
        "confidence": confidence,
        "model_version": model_version,
        "meta": meta or {"raw_scores": raw_scores},
    }
    return content_id in _insert(session, [row])
