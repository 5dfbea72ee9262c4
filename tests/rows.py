"""Writing classifications in tests the way the job does: the row (``db.store``) and, in the same
transaction, the content's consensus (``db.consensus_store``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from config import DEFAULT_AMBIGUOUS_CONFIDENCE, DEFAULT_MODEL_NAME
from db.consensus_store import refresh_consensus
from db.entity_store import AssetRow, EntityRows, save_entities
from db.store import NewClassification, save_classifications


def store_classification(
    session: Session,
    content_id: int,
    sentiment: str,
    confidence: float,
    model_version: str,
    raw_scores: dict[str, float],
    meta: dict[str, Any] | None = None,
    model: str = DEFAULT_MODEL_NAME,
    weights: Mapping[str, float] | None = None,
    symbols: tuple[str, ...] = ("SPY",),
) -> bool:
    """Insert ``model``'s classification of the content unless it has one, refresh its consensus over the
    models of ``weights`` (default: ``model`` alone), and store its entities unless it has some (links to
    ``symbols``; the default: the market as a whole, as for a post that names no asset). True when the
    row was inserted."""
    row = NewClassification(content_id, model, sentiment, confidence, model_version, raw_scores, meta)
    inserted = save_classifications(session, [row])
    refresh_consensus(session, [content_id], dict(weights or {model: 1.0}), DEFAULT_AMBIGUOUS_CONFIDENCE)
    links = [
        AssetRow(symbol, "etf", "default" if symbols == ("SPY",) else "cashtag", 0) for symbol in symbols
    ]
    document = {"schema": 1, "mentions": [], "links": [link.__dict__ for link in links]}
    save_entities(session, {content_id: EntityRows(document, "tests", links)})
    return bool(inserted)
