"""Writing classifications: one current row per content and model, however often a job runs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Insert, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from db.dialect_insert import dialect_name, insert_for
from db.models import Classification, ClassificationHistory, Content

#: (content id, model name): the key of a current classification.
RowKey = tuple[int, str]
#: rows per ``IN (...)`` query.
ROWS_PER_QUERY = 500


@dataclass(frozen=True)
class NewClassification:
    """A classification to store: one model's reading of one content."""

    content_id: int
    model: str
    sentiment: str
    confidence: float
    model_version: str
    raw_scores: dict[str, float] = field(default_factory=dict)
    #: the audit (``jobs.audit``); without one, ``meta`` holds the raw scores only.
    meta: dict[str, Any] | None = None

    @property
    def key(self) -> RowKey:
        return (self.content_id, self.model)

    @property
    def stored_meta(self) -> dict[str, Any]:
        """The row's ``meta``: the audit, or the raw scores alone."""
        return self.meta or {"raw_scores": self.raw_scores}

    def row(self) -> dict[str, Any]:
        return {
            "content_id": self.content_id,
            "model": self.model,
            "sentiment": self.sentiment,
            "confidence": self.confidence,
            "model_version": self.model_version,
            "meta": self.stored_meta,
        }


def record_skip(session: Session, content_id: int, reason: str) -> None:
    """Remember that ``content_id`` was skipped for good, so that sweeps pass over it."""
    session.execute(update(Content).where(Content.id == content_id).values(skip_reason=reason))


def save_classifications(session: Session, new: Sequence[NewClassification]) -> set[RowKey]:
    """Insert each classification unless its content has one by that model (ON CONFLICT DO NOTHING), in
    one statement; return the (content id, model) keys inserted (from RETURNING, not rowcount: -1 on
    PostgreSQL). A row that is there already is kept: a job that runs twice writes one row."""
    if not new:
        return set()
    statement = _insert_new_rows(dialect_name(session))
    return {(content_id, model) for content_id, model in session.execute(statement, [c.row() for c in new])}


@cache
def _insert_new_rows(dialect: str) -> Insert:
    table = Classification.__table__
    return (
        insert_for(dialect)(table)
        .on_conflict_do_nothing(index_elements=["content_id", "model"])
        .returning(table.c.content_id, table.c.model)
    )


def replace_classifications(
    session: Session, new: Sequence[NewClassification], force: Collection[RowKey] = frozenset()
) -> dict[RowKey, str]:
    """Reclassify: give each (content, model) its new classification, keeping the one it replaces in history.

    In the caller's transaction, with the current rows locked (``FOR UPDATE`` on PostgreSQL; SQLite
    has one writer at a time): a row already made by the new classification's model version is kept
    unless its key is in ``force``; otherwise it is copied to ``classification_history`` and updated in
    place, so readers always see exactly one current row per content and model. A key with none gets
    one. Returns, per key, ``"replaced"``, ``"inserted"`` or ``"current"`` (kept: already by it).
    """
    if not new:
        return {}
    wanted = {item.key: item for item in new}
    current = _locked_rows(session, list(wanted))
    missing = [item for key, item in wanted.items() if key not in current]
    results: dict[RowKey, str] = {}
    if missing:
        inserted = save_classifications(session, missing)
        results.update(dict.fromkeys(inserted, "inserted"))
        late = [item.key for item in missing if item.key not in inserted]
        if late:  # classified meanwhile by a normal job: replace that one too (now locked)
            current.update(_locked_rows(session, late))
    history = []
    for key, row in current.items():
        item = wanted[key]
        if row.model_version == item.model_version and key not in force:
            results[key] = "current"
            continue
        history.append(
            {
                "content_id": row.content_id,
                "model": row.model,
                "sentiment": row.sentiment,
                "confidence": row.confidence,
                "model_version": row.model_version,
                "meta": row.meta,
                "classified_at": row.created_at,
            }
        )
        row.sentiment = item.sentiment
        row.confidence = item.confidence
        row.model_version = item.model_version
        row.meta = item.stored_meta
        row.created_at = func.now()
        results[key] = "replaced"
    if history:
        session.execute(insert(ClassificationHistory), history)
    session.flush()
    return results


def _locked_rows(session: Session, keys: list[RowKey]) -> dict[RowKey, Classification]:
    rows: dict[RowKey, Classification] = {}
    for start in range(0, len(keys), ROWS_PER_QUERY):
        chunk = keys[start : start + ROWS_PER_QUERY]
        statement = (
            select(Classification)
            .where(tuple_(Classification.content_id, Classification.model).in_(chunk))
            .with_for_update()
        )
        rows.update({(row.content_id, row.model): row for row in session.scalars(statement)})
    return rows
