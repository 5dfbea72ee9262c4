"""Writing a classification: one row per content, however often a job runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Classification, ClassificationHistory, Content

if TYPE_CHECKING:
    from model.classifier import Prediction

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


def replace_classifications(
    session: Session,
    model_version: str,
    rows: dict[int, Prediction],
    metas: dict[int, dict[str, Any]],
    force: set[int] | frozenset[int] = frozenset(),
) -> dict[int, str]:
    """Reclassify: give each content the new classification, keeping the one it replaces in history.

    In the caller's transaction, with the current rows locked (``FOR UPDATE`` on PostgreSQL; SQLite
    has one writer at a time): a content whose current classification was made by ``model_version``
    already keeps it unless its id is in ``force``; otherwise the current row is copied to
    ``classification_history`` and updated in place, so readers always see exactly one current
    classification. A content with none gets one. Returns, per content id, ``"replaced"``,
    ``"inserted"`` or ``"current"`` (kept: already by this model).
    """
    if not rows:
        return {}
    ids = list(rows)
    locked = select(Classification).where(Classification.content_id.in_(ids)).with_for_update()
    current = {row.content_id: row for row in session.scalars(locked)}
    missing = {content_id: rows[content_id] for content_id in ids if content_id not in current}
    results: dict[int, str] = {}
    if missing:
        inserted = save_classifications(session, model_version, missing, metas)
        results.update(dict.fromkeys(inserted, "inserted"))
        late = [content_id for content_id in missing if content_id not in inserted]
        if late:  # classified meanwhile by a normal job: replace that one too (now locked)
            again = select(Classification).where(Classification.content_id.in_(late)).with_for_update()
            current.update({row.content_id: row for row in session.scalars(again)})
    history = []
    for content_id, row in current.items():
        if row.model_version == model_version and content_id not in force:
            results[content_id] = "current"
            continue
        history.append(
            {
                "content_id": content_id,
                "sentiment": row.sentiment,
                "confidence": row.confidence,
                "model_version": row.model_version,
                "meta": row.meta,
                "classified_at": row.created_at,
            }
        )
        prediction = rows[content_id]
        row.sentiment = prediction.sentiment
        row.confidence = prediction.confidence
        row.model_version = model_version
        row.meta = metas.get(content_id) or {"raw_scores": prediction.raw_scores}
        row.created_at = func.now()
        results[content_id] = "replaced"
    if history:
        session.execute(insert(ClassificationHistory), history)
    session.flush()
    return results
