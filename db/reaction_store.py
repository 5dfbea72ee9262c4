"""Writing the market's reaction to contents: each content's records and event paths, replaced whole."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from db.models import Content, Reaction, ReactionPath

#: ids per ``IN (...)`` query.
IDS_PER_QUERY = 500


def replace_reactions(
    session: Session,
    computed: Mapping[int, tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]],
    computed_at: datetime | None = None,
) -> set[int]:
    """Give each content of ``computed`` (id -> (reaction records, event paths), as ``market.reaction``
    makes them) exactly these reactions and paths, in the caller's transaction; contents that no longer
    exist are left out. ``computed_at``: when the bars they were computed from were read (default: this
    transaction's time). Returns the content ids written."""
    ids = list(computed)
    existing: set[int] = set()
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        existing.update(session.scalars(select(Content.id).where(Content.id.in_(chunk))))
        session.execute(delete(Reaction).where(Reaction.content_id.in_(chunk)))
        session.execute(delete(ReactionPath).where(ReactionPath.content_id.in_(chunk)))
    when = {} if computed_at is None else {"computed_at": computed_at}
    reactions = [_row(record) | when for content_id in existing for record in computed[content_id][0]]
    paths = [
        {"content_id": content_id, "symbol": path["symbol"], "path": path}
        for content_id in existing
        for path in computed[content_id][1]
    ]
    if reactions:
        session.execute(insert(Reaction), reactions)
    if paths:
        session.execute(insert(ReactionPath), paths)
    return existing


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    isolation = record.get("isolation") or {}
    return {
        "content_id": record["content_id"],
        "symbol": record["symbol"],
        "window": record["window"],
        "status": record["status"],
        "market_open": record.get("market_open_at_post"),
        "abnormal_return": record.get("abnormal_return"),
        "z_score": record.get("z_score"),
        "significance": record.get("significance"),
        "isolation": isolation.get("score"),
        "record": dict(record),
    }


def reaction_records(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every stored reaction record (of posts published since ``since``)."""
    statement = select(Reaction.record)
    if since is not None:
        statement = statement.join(Content, Content.id == Reaction.content_id).where(
            Content.published_at >= since
        )
    return [record for (record,) in session.execute(statement)]
