"""Read queries, each a plain function of a session."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from db.models import SENTIMENTS, Classification, Content


@dataclass(frozen=True)
class ContentCounts:
    total: int
    classified: int
    skipped: int

    @property
    def unclassified(self) -> int:
        """Contents still to classify (neither classified nor skipped)."""
        return self.total - self.classified - self.skipped


#: ids per ``IN (...)`` query: far below SQLite's and PostgreSQL's limits on bound parameters.
IDS_PER_QUERY = 500


#: ids per page of the unclassified contents, each page one indexed query.
UNCLASSIFIED_PAGE = 5000


def _unclassified_pages(
    session: Session, columns: tuple, limit: int | None, page_size: int
) -> Iterator[list]:
    """Rows of ``columns`` (the first: ``Content.id``) of the unclassified contents, a page at a time."""
    after: int | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        size = page_size if remaining is None else min(page_size, remaining)
        statement = (
            select(*columns)
            .where(Content.classified == false(), Content.skip_reason.is_(None))
            .order_by(Content.id)
            .limit(size)
        )
        if after is not None:
            statement = statement.where(Content.id > after)
        page = list(session.execute(statement).tuples())
        if page:
            yield page
        if len(page) < size:
            return
        after = page[-1][0]
        if remaining is not None:
            remaining -= len(page)


def unclassified_id_pages(
    session: Session, limit: int | None = None, page_size: int | None = None
) -> Iterator[list[int]]:
    """Ids of contents not yet classified nor skipped for good, oldest first, ``page_size`` at a time.

    Each page is one query on the index of unclassified contents that starts after the last id of the
    page before (keyset paging): the first ids are ready in milliseconds however large the backlog, and
    no query reads it whole. A content classified meanwhile is simply not in a later page.
    """
    for page in _unclassified_pages(session, (Content.id,), limit, page_size or UNCLASSIFIED_PAGE):
        yield [content_id for (content_id,) in page]


def unclassified_ids(session: Session, limit: int | None = None) -> list[int]:
    """Ids of contents not yet classified nor skipped for good, oldest first."""
    return [content_id for page in unclassified_id_pages(session, limit) for content_id in page]


def unclassified_previews(
    session: Session, limit: int | None = None, page_size: int | None = None
) -> Iterator[tuple[int, str]]:
    """(id, text) of the contents ``unclassified_ids`` gives, in its order, a page at a time."""
    for page in _unclassified_pages(
        session, (Content.id, Content.text), limit, page_size or UNCLASSIFIED_PAGE
    ):
        yield from page


def contents_by_id(session: Session, ids: Iterable[int]) -> dict[int, Content]:
    """The contents among ``ids`` that exist, by id (read IDS_PER_QUERY ids at a time: any number works)."""
    wanted = list(dict.fromkeys(ids))
    found: dict[int, Content] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        found.update(
            {content.id: content for content in session.scalars(select(Content).where(Content.id.in_(chunk)))}
        )
    return found


@dataclass(frozen=True)
class ContentOutcome:
    """What the database records for one content: its classification, its skip reason, or neither."""

    content_id: int
    sentiment: str | None
    model_version: str | None
    skip_reason: str | None


def content_outcomes(session: Session, ids: Iterable[int]) -> dict[int, ContentOutcome]:
    """The recorded outcome of each of ``ids`` that exists, by id (a missing content is absent)."""
    wanted = list(dict.fromkeys(ids))
    outcomes: dict[int, ContentOutcome] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        rows = session.execute(
            select(Content.id, Classification.sentiment, Classification.model_version, Content.skip_reason)
            .outerjoin(Classification, Classification.content_id == Content.id)
            .where(Content.id.in_(wanted[start : start + IDS_PER_QUERY]))
        )
        outcomes.update({row[0]: ContentOutcome(*row) for row in rows})
    return outcomes


def model_versions(session: Session) -> dict[str, int]:
    """Classifications per ``model_version``."""
    rows = session.execute(
        select(Classification.model_version, func.count()).group_by(Classification.model_version)
    )
    return {version: count for version, count in rows}


def count_above(session: Session, threshold: float) -> int:
    return session.scalar(select(func.count()).where(Classification.confidence > threshold)) or 0


def sentiment_distribution(session: Session) -> dict[str, int]:
    """Classifications per sentiment, every sentiment present (0 when none)."""
    rows = session.execute(select(Classification.sentiment, func.count()).group_by(Classification.sentiment))
    counts = dict.fromkeys(SENTIMENTS, 0)
    counts.update({sentiment: count for sentiment, count in rows})
    return counts


def content_counts(session: Session) -> ContentCounts:
    total, classified, skipped = session.execute(
        select(
            func.count(),
            func.count().filter(Content.classified.is_(True)),
            func.count().filter(Content.classified.is_(False), Content.skip_reason.is_not(None)),
        ).select_from(Content)
    ).one()
    return ContentCounts(total=total, classified=classified, skipped=skipped)


def margin_of():
    """SQL for a classification's margin between its two best scores (its audit's ``quality.margin``)."""
    return Classification.meta["quality"]["margin"].as_float()


def count_below_margin(session: Session, threshold: float) -> tuple[int, int]:
    """(classifications whose margin is below ``threshold``, classifications with an audited margin)."""
    margin = margin_of()
    uncertain, audited = session.execute(
        select(func.count().filter(margin < threshold), func.count(margin))
    ).one()
    return uncertain or 0, audited or 0


def uncertain_classifications(
    session: Session, threshold: float, limit: int | None = 50
) -> list[tuple[Classification, Content]]:
    """The classifications the model was least sure of (margin below ``threshold``), least sure first."""
    margin = margin_of()
    statement = (
        select(Classification, Content)
        .join(Content, Content.id == Classification.content_id)
        .where(margin < threshold)
        .order_by(margin, Classification.id)
        .limit(limit)
    )
    return [(classification, content) for classification, content in session.execute(statement)]


def current_versions(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """The model version of each of ``ids``' current classification (unclassified ids are absent)."""
    wanted = list(dict.fromkeys(ids))
    versions: dict[int, str] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        statement = select(Classification.content_id, Classification.model_version).where(
            Classification.content_id.in_(chunk)
        )
        versions.update({content_id: version for content_id, version in session.execute(statement)})
    return versions


def reclassification_candidates(
    session: Session,
    *,
    stale_for: str | None = None,
    ids: Iterable[int] | None = None,
    before: datetime | None = None,
) -> list[tuple[int, str | None]]:
    """(content id, current model version) of the contents to reclassify, by id.

    ``stale_for``: classifications made by any other model version than this one; ``ids``: these
    contents (an unclassified one has version None); ``before``: classifications made before this
    time; none of them: every classification.
    """
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        versions = current_versions(session, wanted)
        existing = contents_by_id(session, wanted)
        return [(content_id, versions.get(content_id)) for content_id in wanted if content_id in existing]
    statement = select(Classification.content_id, Classification.model_version).order_by(
        Classification.content_id
    )
    if stale_for is not None:
        statement = statement.where(Classification.model_version != stale_for)
    if before is not None:
        statement = statement.where(Classification.created_at < before)
    return [(content_id, version) for content_id, version in session.execute(statement)]
