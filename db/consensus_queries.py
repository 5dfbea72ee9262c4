"""Reads about several models side by side: their joint labels, the consensus and its ambiguous posts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db.models import SENTIMENTS, Classification, Consensus, Content


def joint_labels(session: Session, first: str, second: str) -> dict[tuple[str, str], int]:
    """Contents per (``first``'s label, ``second``'s label), over the contents both models classified."""
    a, b = aliased(Classification), aliased(Classification)
    rows = session.execute(
        select(a.sentiment, b.sentiment, func.count())
        .join(b, b.content_id == a.content_id)
        .where(a.model == first, b.model == second)
        .group_by(a.sentiment, b.sentiment)
    )
    return {(left, right): count for left, right, count in rows}


@dataclass(frozen=True)
class ConsensusFigures:
    """The consensus over all contents that have one."""

    contents: int
    sentiments: dict[str, int]
    ambiguous: int
    #: contents where at least one model's label differs from the consensus.
    disputed: int
    #: mean agreement (None without contents).
    mean_agreement: float | None


def consensus_figures(session: Session) -> ConsensusFigures:
    rows = session.execute(
        select(
            Consensus.sentiment,
            func.count(),
            func.count().filter(Consensus.ambiguous.is_(True)),
            func.count().filter(Consensus.agreement < 1.0),
            func.sum(Consensus.agreement),
        ).group_by(Consensus.sentiment)
    ).all()
    sentiments = dict.fromkeys(SENTIMENTS, 0)
    total = ambiguous = disputed = 0
    agreement = 0.0
    for sentiment, count, unsure, split, agreeing in rows:
        sentiments[sentiment] = count
        total += count
        ambiguous += unsure
        disputed += split
        agreement += float(agreeing or 0.0)
    return ConsensusFigures(total, sentiments, ambiguous, disputed, agreement / total if total else None)


def ambiguous_posts(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """The ambiguous consensus rows, least confident first, with their post's text and each model's
    label and confidence."""
    rows = session.execute(
        select(Consensus, Content.text, Content.source, Content.published_at)
        .join(Content, Content.id == Consensus.content_id)
        .where(Consensus.ambiguous.is_(True))
        .order_by(Consensus.confidence, Consensus.content_id)
        .limit(limit)
    )
    return [
        {
            "content_id": consensus.content_id,
            "source": source,
            "published_at": published_at.isoformat() if published_at is not None else None,
            "text": text,
            "sentiment": consensus.sentiment,
            "confidence": consensus.confidence,
            "agreement": consensus.agreement,
            "dissent": list(consensus.dissent),
            "models": {
                name: {"sentiment": reading.get("sentiment"), "confidence": reading.get("confidence")}
                for name, reading in consensus.models.items()
            },
        }
        for consensus, text, source, published_at in rows
    ]


def consensus_bases(session: Session) -> dict[str, int]:
    """Consensus rows per basis (``name:weight,...`` of the models they were made of)."""
    rows = session.execute(select(Consensus.basis, func.count()).group_by(Consensus.basis))
    return {basis: count for basis, count in rows}
