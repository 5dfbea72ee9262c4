"""Writing what contents name: their entities document and the assets they are linked to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.orm import Session

from db.dialect_insert import dialect_name, insert_for
from db.models import ContentAsset, ContentEntities

#: ids per ``IN (...)`` query.
IDS_PER_QUERY = 500


@dataclass(frozen=True)
class AssetRow:
    """One link of a content to an asset."""

    symbol: str
    kind: str | None
    method: str
    mentions: int


@dataclass(frozen=True)
class EntityRows:
    """A content's entities as stored: the whole document, the list's fingerprint, and its links."""

    document: Mapping[str, Any]
    assets_version: str
    links: Sequence[AssetRow]


def with_entities(session: Session, content_ids: Iterable[int]) -> set[int]:
    """The contents among ``content_ids`` whose entities are stored."""
    wanted = list(dict.fromkeys(content_ids))
    found: set[int] = set()
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        found.update(
            session.scalars(select(ContentEntities.content_id).where(ContentEntities.content_id.in_(chunk)))
        )
    return found


def save_entities(session: Session, entities: Mapping[int, EntityRows]) -> set[int]:
    """Store each content's entities and links unless it has some (a job that runs twice writes them
    once); return the content ids written."""
    if not entities:
        return set()
    documents, links_statement = _inserts(dialect_name(session))
    rows = [
        {"content_id": content_id, "document": dict(item.document), "assets_version": item.assets_version}
        for content_id, item in entities.items()
    ]
    written = set(session.scalars(documents, rows))
    links = [
        {"content_id": content_id, "symbol": link.symbol, "kind": link.kind, "method": link.method,
         "mentions": link.mentions}
        for content_id in written
        for link in entities[content_id].links
    ]  # fmt: skip
    if links:
        session.execute(links_statement, links)
    return written


@cache
def _inserts(dialect: str) -> tuple[Insert, Insert]:
    """The entities documents' insert (returning the contents written) and the asset links' insert."""
    insert = insert_for(dialect)
    documents = ContentEntities.__table__
    return (
        insert(documents)
        .on_conflict_do_nothing(index_elements=["content_id"])
        .returning(documents.c.content_id),
        insert(ContentAsset.__table__).on_conflict_do_nothing(index_elements=["content_id", "symbol"]),
    )
