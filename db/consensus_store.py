"""Keeping each content's consensus in step with its classifications.

``refresh_consensus`` runs in the transaction that wrote (or replaced) the classifications, after
``lock_contents``: two workers writing different models' rows of one post take turns, and the second
reads the first's row, so the consensus is never made of fewer rows than the content has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam, delete, func, select
from sqlalchemy.orm import Session

from consensus.vote import Reading, Verdict, combine
from db.dialect_insert import dialect_name, insert_for
from db.models import Classification, Consensus, Content
from db.store import NewClassification

#: ids per ``IN (...)`` query.
IDS_PER_QUERY = 500


_LOCK_CONTENTS = (
    select(Content.id)
    .where(Content.id.in_(bindparam("ids", expanding=True)))
    .order_by(Content.id)
    .with_for_update(key_share=True)
)


def lock_contents(session: Session, content_ids: Iterable[int]) -> None:
    """Lock the contents' rows until the transaction ends (PostgreSQL; SQLite has one writer at a time),
    in id order, so that two batches sharing posts cannot deadlock.

    ``FOR NO KEY UPDATE``: it makes writers of the same content take turns, while inserts that merely
    reference the content (a classification's foreign key takes ``FOR KEY SHARE``) go on unblocked."""
    if session.get_bind().dialect.name != "postgresql":
        return
    wanted = sorted(set(content_ids))
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        session.execute(_LOCK_CONTENTS, {"ids": chunk})


def readings(
    session: Session, content_ids: Iterable[int], weights: Mapping[str, float]
) -> dict[int, list[Reading]]:
    """The current classifications of the contents by the models of ``weights``, as readings in the
    order of ``weights`` (the configuration's)."""
    wanted = list(dict.fromkeys(content_ids))
    order = {name: index for index, name in enumerate(weights)}
    found: dict[int, list[Reading]] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        rows = session.execute(
            select(
                Classification.content_id,
                Classification.model,
                Classification.sentiment,
                Classification.confidence,
                Classification.model_version,
                Classification.meta["raw_scores"],
            ).where(
                Classification.content_id.in_(wanted[start : start + IDS_PER_QUERY]),
                Classification.model.in_(list(weights)),
            )
        )
        for content_id, model, sentiment, confidence, version, scores in rows:
            found.setdefault(content_id, []).append(
                _reading(model, sentiment, confidence, version, scores, weights)
            )
    for content_readings in found.values():
        content_readings.sort(key=lambda reading: order[reading.model])
    return found


def _reading(
    model: str, sentiment: str, confidence: float, version: str, raw: Any, weights: Mapping[str, float]
) -> Reading:
    return Reading(model, sentiment, confidence, _scores(raw, sentiment, confidence), weights[model], version)


def _written_readings(
    written: Mapping[int, Sequence[NewClassification]], weights: Mapping[str, float]
) -> dict[int, list[Reading]]:
    """The readings of contents whose rows by every model of ``weights`` this transaction wrote: the
    current rows are those (one per content and model), so they need not be read back."""
    known: dict[int, list[Reading]] = {}
    for content_id, items in written.items():
        by_model = {item.model: item for item in items if item.model in weights}
        if by_model.keys() == weights.keys():
            known[content_id] = [_stored_reading(by_model[model], weights) for model in weights]
    return known


def _stored_reading(item: NewClassification, weights: Mapping[str, float]) -> Reading:
    """``item`` as ``readings`` reads it back once stored (its stored meta's raw scores)."""
    raw = item.stored_meta.get("raw_scores")
    return _reading(item.model, item.sentiment, item.confidence, item.model_version, raw, weights)


def _scores(raw: Any, sentiment: str, confidence: float) -> dict[str, float]:
    """A row's probabilities by sentiment (rows without them count as sure of their label)."""
    if isinstance(raw, dict) and raw and all(isinstance(value, int | float) for value in raw.values()):
        return {str(label): float(value) for label, value in raw.items()}
    return {sentiment: confidence}


def refresh_consensus(
    session: Session,
    content_ids: Iterable[int],
    weights: Mapping[str, float],
    ambiguous_below: float,
    written: Mapping[int, Sequence[NewClassification]] | None = None,
) -> dict[int, Verdict]:
    """Recompute and store the consensus of each content over its current classifications by the
    configured models (``weights``: name -> weight); a content with none has its consensus removed.

    ``written``: the classifications this transaction stored (inserted or replaced), by content; a
    content they cover for every configured model is not read back (one statement fewer for a job).
    """
    wanted = list(dict.fromkeys(content_ids))
    if not wanted:
        return {}
    known = _written_readings({i: written[i] for i in wanted if i in written}, weights) if written else {}
    unknown = [content_id for content_id in wanted if content_id not in known]
    found = readings(session, unknown, weights) if unknown else {}
    verdicts = {
        content_id: combine(content_readings, ambiguous_below)
        for content_id, content_readings in {**found, **known}.items()
    }
    rows = [
        {
            "content_id": content_id,
            "sentiment": verdict.sentiment,
            "confidence": verdict.confidence,
            "margin": verdict.margin,
            "agreement": verdict.agreement,
            "ambiguous": verdict.ambiguous,
            "models": verdict.models,
            "dissent": verdict.dissent,
            "scores": verdict.scores,
            "method": verdict.method,
            "basis": verdict.basis,
        }
        for content_id, verdict in verdicts.items()
    ]
    if rows:
        session.execute(_upsert_consensus(dialect_name(session)), rows)
    gone = [content_id for content_id in wanted if content_id not in verdicts]
    for start in range(0, len(gone), IDS_PER_QUERY):
        session.execute(
            delete(Consensus).where(Consensus.content_id.in_(gone[start : start + IDS_PER_QUERY]))
        )
    return verdicts


@cache
def _upsert_consensus(dialect: str) -> Insert:
    insert = insert_for(dialect)(Consensus.__table__)
    columns = (
        "sentiment", "confidence", "margin", "agreement", "ambiguous", "models", "dissent", "scores", "method", "basis"
    )  # fmt: skip
    return insert.on_conflict_do_update(
        index_elements=["content_id"],
        set_={**{column: insert.excluded[column] for column in columns}, "updated_at": func.now()},
    )
