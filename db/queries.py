"""Read queries, each a plain function of a session."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session

from config import DEFAULT_MODEL_NAME
from db.models import SENTIMENTS, Classification, Consensus, Content, ContentEntities, Reaction


@dataclass(frozen=True)
class ContentCounts:
    total: int
    #: contents with a current classification by every configured model.
    classified: int
    skipped: int
    #: contents with a classification by some of the configured models, not all (a model added later).
    partly: int = 0

    @property
    def unclassified(self) -> int:
        """Contents still to classify by some model (neither fully classified nor skipped)."""
        return self.total - self.classified - self.skipped


#: ids per ``IN (...)`` query: far below SQLite's and PostgreSQL's limits on bound parameters.
IDS_PER_QUERY = 500


#: ids per page of the unclassified contents, each page one indexed query.
UNCLASSIFIED_PAGE = 5000
#: which unclassified contents a page query selects: ``missing`` any configured model's classification,
#: ``new`` (no classification at all) or ``backfill`` (some, but not by every configured model).
SCOPES = ("missing", "new", "backfill")


def _has_row(model: str | None = None) -> ColumnElement[bool]:
    """SQL: the content has a classification (by ``model``, or by any)."""
    condition = exists().where(Classification.content_id == Content.id)
    return condition.where(Classification.model == model) if model is not None else condition


def lacking(models: Sequence[str]) -> ColumnElement[bool]:
    """SQL: the content lacks a current classification by at least one of ``models``, or its entities."""
    no_entities = ~exists().where(ContentEntities.content_id == Content.id)
    return or_(*[~_has_row(model) for model in models], no_entities)


def _scope(models: Sequence[str], scope: str) -> ColumnElement[bool]:
    if scope == "new":
        return ~_has_row()
    if scope == "backfill":
        return and_(_has_row(), lacking(models))
    return lacking(models)


def _unclassified_pages(
    session: Session, columns: tuple, models: Sequence[str], limit: int | None, page_size: int, scope: str
) -> Iterator[list]:
    """Rows of ``columns`` (the first: ``Content.id``) of the unclassified contents, a page at a time."""
    after: int | None = None
    remaining = limit
    condition = _scope(models, scope)
    while remaining is None or remaining > 0:
        size = page_size if remaining is None else min(page_size, remaining)
        statement = (
            select(*columns).where(Content.skip_reason.is_(None), condition).order_by(Content.id).limit(size)
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
    session: Session,
    models: Sequence[str] = (DEFAULT_MODEL_NAME,),
    limit: int | None = None,
    page_size: int | None = None,
    scope: str = "missing",
) -> Iterator[list[int]]:
    """Ids of contents that lack a classification by one of ``models`` (the configured ones) and are
    not skipped for good, oldest first, ``page_size`` at a time (``scope``: see SCOPES).

    Each page is one query that starts after the last id of the page before (keyset paging), reading
    contents in id order and looking each one's classifications up in their (content, model) index:
    the first ids are ready in milliseconds however large the backlog, and no query reads it whole. A
    content classified meanwhile is simply not in a later page.
    """
    pages = _unclassified_pages(session, (Content.id,), models, limit, page_size or UNCLASSIFIED_PAGE, scope)
    for page in pages:
        yield [content_id for (content_id,) in page]


def unclassified_ids(
    session: Session, models: Sequence[str] = (DEFAULT_MODEL_NAME,), limit: int | None = None
) -> list[int]:
    """Ids of contents lacking a classification by one of ``models``, not skipped for good, oldest first."""
    return [content_id for page in unclassified_id_pages(session, models, limit) for content_id in page]


def unclassified_previews(
    session: Session,
    models: Sequence[str] = (DEFAULT_MODEL_NAME,),
    limit: int | None = None,
    page_size: int | None = None,
) -> Iterator[tuple[int, str]]:
    """(id, text) of the contents ``unclassified_ids`` gives, in its order, a page at a time."""
    for page in _unclassified_pages(
        session, (Content.id, Content.text), models, limit, page_size or UNCLASSIFIED_PAGE, "missing"
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


# A classification job's reads, built once (the ids, and the models, bound at each call): building
# them and their cache keys took ~0.2 ms of every single job (bench/README.md).
_CONTENTS_AND_ENTITIES = select(Content, exists().where(ContentEntities.content_id == Content.id)).where(
    Content.id.in_(bindparam("ids", expanding=True))
)
_CURRENT_VERSIONS = select(
    Classification.content_id, Classification.model, Classification.model_version
).where(Classification.content_id.in_(bindparam("ids", expanding=True)))
_CURRENT_VERSIONS_OF_MODELS = _CURRENT_VERSIONS.where(
    Classification.model.in_(bindparam("models", expanding=True))
)


def contents_and_entities(session: Session, ids: Iterable[int]) -> tuple[dict[int, Content], set[int]]:
    """``contents_by_id`` and, in the same statement, which of those contents have their entities stored
    (``db.entity_store.with_entities``): what a classification job reads about its posts."""
    wanted = list(dict.fromkeys(ids))
    found: dict[int, Content] = {}
    extracted: set[int] = set()
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        for content, has_entities in session.execute(_CONTENTS_AND_ENTITIES, {"ids": chunk}):
            found[content.id] = content
            if has_entities:
                extracted.add(content.id)
    return found, extracted


@dataclass(frozen=True)
class ContentOutcome:
    """What the database records for one content: its classifications and consensus, its skip reason."""

    content_id: int
    #: the consensus sentiment, once every one of the models asked about has classified it (else None).
    sentiment: str | None
    #: model name -> model version of its current classification (those it has).
    versions: dict[str, str]
    skip_reason: str | None


def content_outcomes(
    session: Session, ids: Iterable[int], models: Sequence[str] = (DEFAULT_MODEL_NAME,)
) -> dict[int, ContentOutcome]:
    """The recorded outcome of each of ``ids`` that exists, by id (a missing content is absent): classified
    (``sentiment`` set) when it has a current classification by every one of ``models``."""
    wanted = list(dict.fromkeys(ids))
    outcomes: dict[int, ContentOutcome] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        contents = session.execute(
            select(Content.id, Content.skip_reason, Consensus.sentiment)
            .outerjoin(Consensus, Consensus.content_id == Content.id)
            .where(Content.id.in_(chunk))
        ).all()
        versions: dict[int, dict[str, str]] = {}
        for content_id, model, version in session.execute(
            select(Classification.content_id, Classification.model, Classification.model_version).where(
                Classification.content_id.in_(chunk), Classification.model.in_(list(models))
            )
        ):
            versions.setdefault(content_id, {})[model] = version
        for content_id, skip_reason, sentiment in contents:
            have = versions.get(content_id, {})
            complete = all(model in have for model in models)
            outcomes[content_id] = ContentOutcome(
                content_id, sentiment if complete else None, have, skip_reason
            )
    return outcomes


def reaction_statuses(session: Session, ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """The stored reactions of each of ``ids`` that has some: status -> (asset, window) records."""
    wanted = list(dict.fromkeys(ids))
    statuses: dict[int, dict[str, int]] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        rows = session.execute(
            select(Reaction.content_id, Reaction.status, func.count())
            .where(Reaction.content_id.in_(wanted[start : start + IDS_PER_QUERY]))
            .group_by(Reaction.content_id, Reaction.status)
        )
        for content_id, status, count in rows:
            statuses.setdefault(content_id, {})[status] = count
    return statuses


def model_versions(session: Session, model: str | None = None) -> dict[str, int]:
    """Classifications per ``model_version`` (of ``model``, or of every model)."""
    statement = select(Classification.model_version, func.count()).group_by(Classification.model_version)
    if model is not None:
        statement = statement.where(Classification.model == model)
    return {version: count for version, count in session.execute(statement)}


def versions_by_model(session: Session) -> dict[str, dict[str, int]]:
    """Classifications per model name and model version."""
    rows = session.execute(
        select(Classification.model, Classification.model_version, func.count()).group_by(
            Classification.model, Classification.model_version
        )
    )
    found: dict[str, dict[str, int]] = {}
    for model, version, count in rows:
        found.setdefault(model, {})[version] = count
    return found


def count_above(session: Session, threshold: float, model: str = DEFAULT_MODEL_NAME) -> int:
    """``model``'s classifications with a confidence above ``threshold``."""
    return (
        session.scalar(
            select(func.count()).where(Classification.model == model, Classification.confidence > threshold)
        )
        or 0
    )


def sentiment_distribution(session: Session, model: str = DEFAULT_MODEL_NAME) -> dict[str, int]:
    """``model``'s classifications per sentiment, every sentiment present (0 when none)."""
    rows = session.execute(
        select(Classification.sentiment, func.count())
        .where(Classification.model == model)
        .group_by(Classification.sentiment)
    )
    counts = dict.fromkeys(SENTIMENTS, 0)
    counts.update({sentiment: count for sentiment, count in rows})
    return counts


def content_counts(session: Session, models: Sequence[str] = (DEFAULT_MODEL_NAME,)) -> ContentCounts:
    """Contents in all, classified by every one of ``models``, by some of them only, and skipped for good."""
    total, skipped = session.execute(
        select(func.count(), func.count(Content.skip_reason)).select_from(Content)
    ).one()
    per_content = (
        select(Classification.content_id, func.count().label("models"))
        .join(Content, Content.id == Classification.content_id)
        .where(Classification.model.in_(list(models)), Content.skip_reason.is_(None))
        .group_by(Classification.content_id)
        .subquery()
    )
    classified, partly = session.execute(
        select(
            func.count().filter(per_content.c.models == len(models)),
            func.count().filter(per_content.c.models < len(models)),
        ).select_from(per_content)
    ).one()
    return ContentCounts(total=total, classified=classified, skipped=skipped, partly=partly)


def unclassified_by_model(session: Session, models: Sequence[str]) -> dict[str, int]:
    """Per model: contents not skipped for good that lack its current classification.

    From counts the indexes answer (contents, skipped contents, the model's rows, its rows of skipped
    contents), not an anti-join of the whole table: cheap enough for every scrape.
    """
    total, skipped = session.execute(
        select(func.count(), func.count(Content.skip_reason)).select_from(Content)
    ).one()
    rows = dict(
        session.execute(
            select(Classification.model, func.count())
            .where(Classification.model.in_(list(models)))
            .group_by(Classification.model)
        ).all()
    )
    of_skipped = dict(
        session.execute(
            select(Classification.model, func.count())
            .join(Content, Content.id == Classification.content_id)
            .where(Classification.model.in_(list(models)), Content.skip_reason.is_not(None))
            .group_by(Classification.model)
        ).all()
    )
    return {model: total - skipped - rows.get(model, 0) + of_skipped.get(model, 0) for model in models}


def margin_of():
    """SQL for a classification's margin between its two best scores (its audit's ``quality.margin``)."""
    return Classification.meta["quality"]["margin"].as_float()


def count_below_margin(
    session: Session, threshold: float, model: str = DEFAULT_MODEL_NAME
) -> tuple[int, int]:
    """(``model``'s classifications whose margin is below ``threshold``, those with an audited margin)."""
    margin = margin_of()
    uncertain, audited = session.execute(
        select(func.count().filter(margin < threshold), func.count(margin)).where(
            Classification.model == model
        )
    ).one()
    return uncertain or 0, audited or 0


def uncertain_classifications(
    session: Session, threshold: float, limit: int | None = 50, model: str = DEFAULT_MODEL_NAME
) -> list[tuple[Classification, Content]]:
    """``model``'s classifications it was least sure of (margin below ``threshold``), least sure first."""
    margin = margin_of()
    statement = (
        select(Classification, Content)
        .join(Content, Content.id == Classification.content_id)
        .where(Classification.model == model, margin < threshold)
        .order_by(margin, Classification.id)
        .limit(limit)
    )
    return [(classification, content) for classification, content in session.execute(statement)]


def current_versions(
    session: Session, ids: Iterable[int], models: Sequence[str] | None = None
) -> dict[int, dict[str, str]]:
    """Per content among ``ids``: model name -> model version of its current classifications (of
    ``models``, or of every model); a content without any is absent."""
    wanted = list(dict.fromkeys(ids))
    versions: dict[int, dict[str, str]] = {}
    statement, parameters = _CURRENT_VERSIONS, {}
    if models is not None:
        statement, parameters = _CURRENT_VERSIONS_OF_MODELS, {"models": list(models)}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        for content_id, model, version in session.execute(statement, {"ids": chunk, **parameters}):
            versions.setdefault(content_id, {})[model] = version
    return versions


def reclassification_candidates(
    session: Session,
    models: Sequence[str] = (DEFAULT_MODEL_NAME,),
    *,
    stale_for: dict[str, str] | None = None,
    ids: Iterable[int] | None = None,
    before: datetime | None = None,
) -> list[tuple[int, dict[str, str]]]:
    """(content id, {model: current version}) of the contents to reclassify with ``models``, by id.

    ``stale_for`` (model -> the version it would write now): contents with a classification by one of
    the models made by any other version; ``ids``: these contents (versions of the models they have);
    ``before``: contents with a classification by one of the models made before this time; none of
    them: every content classified by one of the models.
    """
    names = list(models)
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        versions = current_versions(session, wanted, names)
        existing = contents_by_id(session, wanted)
        return [(content_id, versions.get(content_id, {})) for content_id in wanted if content_id in existing]
    statement = select(Classification.content_id, Classification.model, Classification.model_version).where(
        Classification.model.in_(names)
    )
    if before is not None:
        statement = statement.where(Classification.created_at < before)
    found: dict[int, dict[str, str]] = {}
    for content_id, model, version in session.execute(statement):
        if stale_for is not None and stale_for.get(model) == version:
            continue
        found.setdefault(content_id, {})[model] = version
    return sorted(found.items())
