"""The reads behind the report's ``reactions`` figures: plain functions of a session and a ``Selection``.

The stored reaction records and event paths of the selected posts, each post's consensus sentiment
(with one model: that model's reading), and for the few posts a report lists, what a reader needs
beside the move: the visible text, the linked assets with the words that named them, and each
model's label. The figures themselves are ``market.statistics``'s, computed from these rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Consensus, Content, ContentAsset, ContentEntities, Reaction, ReactionPath
from model.visible_text import visible_text
from reports.selection import Selection
from reports.sentiment_queries import narrowed

#: ids per ``IN (...)`` query.
IDS_PER_QUERY = 500


def reaction_records(session: Session, selection: Selection) -> list[dict[str, Any]]:
    """The figures ``market.statistics`` reads of every stored reaction record of the selected posts (by
    post, symbol, window): the columns, and ``complete`` and ``p_value`` taken out of the record by the
    database, so that the whole records are not read (decoding them is most of the time at scale)."""
    record = Reaction.record
    statement = narrowed(
        select(
            Reaction.content_id,
            Reaction.symbol,
            Reaction.window,
            Reaction.status,
            Reaction.abnormal_return,
            Reaction.z_score,
            record["complete"].as_boolean(),
            record["p_value"].as_float(),
        ).join(Content, Content.id == Reaction.content_id),
        selection,
    ).order_by(Reaction.content_id, Reaction.symbol, Reaction.window)
    return [
        {
            "content_id": content_id,
            "symbol": symbol,
            "window": window,
            "status": status,
            "abnormal_return": abnormal,
            "z_score": z,
            "complete": bool(complete),
            "p_value": p_value,
        }
        for content_id, symbol, window, status, abnormal, z, complete, p_value in session.execute(statement)
    ]


def whole_records(
    session: Session, keys: Iterable[tuple[int, str, str]]
) -> dict[tuple[int, str, str], dict[str, Any]]:
    """The stored records of ``keys`` (content id, symbol, window) that exist."""
    found: dict[tuple[int, str, str], dict[str, Any]] = {}
    for content_id, symbol, window in keys:
        row = session.get(Reaction, (content_id, symbol, window))
        if row is not None:
            found[(content_id, symbol, window)] = row.record
    return found


def reaction_paths(session: Session, selection: Selection) -> list[dict[str, Any]]:
    """Every stored event path (``EventPath.to_json()``) of the selected posts, by post and symbol."""
    statement = narrowed(
        select(ReactionPath.path).join(Content, Content.id == ReactionPath.content_id), selection
    ).order_by(ReactionPath.content_id, ReactionPath.symbol)
    return [path for (path,) in session.execute(statement)]


def reacted_sentiments(session: Session, selection: Selection) -> dict[int, str]:
    """The consensus sentiment of each selected post that has a reaction (posts without one left out)."""
    reacted = select(Reaction.content_id).distinct().scalar_subquery()
    statement = narrowed(
        select(Consensus.content_id, Consensus.sentiment)
        .join(Content, Content.id == Consensus.content_id)
        .where(Consensus.content_id.in_(reacted)),
        selection,
    )
    return {content_id: sentiment for content_id, sentiment in session.execute(statement)}


@dataclass(frozen=True)
class LinkedAsset:
    """An asset a post is linked to: how it was found, and the words of the post that named it."""

    symbol: str
    kind: str | None
    #: cashtag, alias, model, or default (the post names none: the market as a whole).
    method: str
    words: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "kind": self.kind, "method": self.method, "words": self.words}


@dataclass(frozen=True)
class ReactedPost:
    """A post as a list of moves shows it: its visible text, assets, and consensus with each model's label."""

    content_id: int
    source: str
    author: str | None
    published_at: datetime | None
    text: str
    #: None when the post has no consensus (not classified by every model yet).
    sentiment: str | None
    confidence: float | None
    #: model name -> {"sentiment", "confidence"} of each model the consensus was made of.
    models: dict[str, dict[str, Any]]
    assets: list[LinkedAsset]


def reacted_posts(session: Session, content_ids: Collection[int]) -> dict[int, ReactedPost]:
    """The posts of ``content_ids`` that exist, each with its text, consensus and linked assets."""
    ids = sorted(set(content_ids))
    posts: dict[int, ReactedPost] = {}
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        assets = _linked_assets(session, chunk)
        rows = session.execute(
            select(Content, Consensus)
            .outerjoin(Consensus, Consensus.content_id == Content.id)
            .where(Content.id.in_(chunk))
        )
        for content, consensus in rows:
            posts[content.id] = ReactedPost(
                content_id=content.id,
                source=content.source,
                author=content.author,
                published_at=content.published_at,
                text=visible_text(content.text),
                sentiment=None if consensus is None else consensus.sentiment,
                confidence=None if consensus is None else consensus.confidence,
                models={}
                if consensus is None
                else {
                    name: {"sentiment": reading.get("sentiment"), "confidence": reading.get("confidence")}
                    for name, reading in consensus.models.items()
                },
                assets=assets.get(content.id, []),
            )
    return posts


def _linked_assets(session: Session, content_ids: list[int]) -> dict[int, list[LinkedAsset]]:
    """Per content: its ``content_assets`` links, each with the surface words of its mentions."""
    words: dict[int, dict[str, list[str]]] = {}
    for content_id, document in session.execute(
        select(ContentEntities.content_id, ContentEntities.document).where(
            ContentEntities.content_id.in_(content_ids)
        )
    ):
        words[content_id] = _mention_words(document.get("mentions") or [])
    linked: dict[int, list[LinkedAsset]] = {}
    for row in session.scalars(
        select(ContentAsset)
        .where(ContentAsset.content_id.in_(content_ids))
        .order_by(ContentAsset.content_id, ContentAsset.symbol)
    ):
        surface = words.get(row.content_id, {}).get(row.symbol, [])
        linked.setdefault(row.content_id, []).append(LinkedAsset(row.symbol, row.kind, row.method, surface))
    return linked


def _mention_words(mentions: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Symbol -> the distinct words that named it, in the order they appear."""
    words: dict[str, list[str]] = {}
    for mention in mentions:
        symbol, text = mention.get("symbol"), mention.get("text")
        if symbol and text and text not in words.setdefault(symbol, []):
            words[symbol].append(text)
    return words
