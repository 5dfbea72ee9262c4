"""What the market did after each content: ``react_content`` is the RQ job (``react-content-<id>-<database
id>``, unique per content), run on the classification queue by the same workers.

It is enqueued for the contents a classification job has just linked to assets (when the database
holds prices at all), and again for the posts an import of prices covers (``posts_covered``);
the hourly sweep enqueues what an import has made stale since. The job computes, for each linked asset
and each window (``market.reaction``), the return, the abnormal return against the asset's own baseline,
its z-score and significance, whether the market was open, the isolation from the source's other posts
and whether the data was complete, and the event-study path; it replaces the content's reactions in one
transaction, so a job that runs twice writes them once, and a reader sees one set.

One path for one job and for a worker's batch (``react_contents``): the batch's posts, in time order,
share one bar source, which reads each symbol's bars a month at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from rq.timeouts import BaseTimeoutException
from sqlalchemy import func, select

from config import Settings, settings
from db.consensus_store import lock_contents
from db.entity_store import with_entities
from db.identity import identity_in
from db.models import Content, ContentAsset
from db.reaction_store import replace_reactions
from db.session import session_scope
from errors import first_line
from jobs.classify import ClassificationFailed, refuse
from jobs.failures import InfrastructureUnavailable, infrastructure_error, is_infrastructure_failure
from jobs.outcomes import (
    CONTENT_NOT_FOUND,
    FAILED,
    NO_ENTITIES,
    NO_PUBLICATION_TIME,
    REACTED,
    REFUSED,
    WRONG_DATABASE,
    Outcome,
)
from jobs.registry import check_classify_arguments

#: (content id, database id): what a reaction job asks for.
Request = tuple[int, str]
#: days of other posts read around a batch's posts for the isolation score: windows of up to a few
#: sessions, over a weekend or holidays.
ISOLATION_MARGIN = timedelta(days=10)
#: seconds before SQLite's clock at the start of a computation's read that its reactions count as
#: computed: that clock counts whole seconds (PostgreSQL's, microseconds: none there).
SQLITE_CLOCK_MARGIN = timedelta(seconds=1)


def react_content(content_id: int, database_id: str) -> dict[str, Any]:
    """The RQ job: the market's reaction to one content of the database ``database_id``, stored.

    Skips (missing content, no publication time, no entities yet) return normally and are never
    retried; the post's own failure raises ClassificationFailed, the infrastructure's
    InfrastructureUnavailable (the worker hands the job back)."""
    from rq import get_current_job

    job = get_current_job()
    problem = check_classify_arguments([content_id, database_id], {})
    if problem:
        raise refuse(job, problem.replace("classify_content", "react_content"))
    try:
        (outcome,) = react_contents([(content_id, database_id)])
    except (InfrastructureUnavailable, BaseTimeoutException):
        raise
    except Exception as error:
        raise ClassificationFailed(first_line(error)) from error
    if outcome.status == FAILED:
        raise ClassificationFailed(outcome.error or "failed")
    if outcome.status == REFUSED:
        raise refuse(job, outcome.error or WRONG_DATABASE)
    return outcome.as_result()


@cache
def _calendar(name: str):
    from market.calendar import trading_calendar

    return trading_calendar(name)


def react_contents(
    requests: Sequence[Request], database_url: str | None = None, *, config: Settings | None = None
) -> list[Outcome]:
    """The reaction of each requested content, computed with one bar source in time order and stored in
    one transaction (each in its own when that fails for a post's reason); one outcome per request."""
    from market.db_source import DatabaseBarSource
    from market.reaction import OtherPosts, Post, event_paths, post_reactions
    from market.settings import market_settings

    config = config or settings()
    url = database_url or config.database_url
    wanted = list(dict.fromkeys(requests))
    outcomes: dict[Request, Outcome] = {}
    computed: dict[int, tuple[list[dict], list[dict]]] = {}
    market = market_settings()
    calendar = _calendar(market.calendar)
    try:
        with session_scope(url) as session:
            read_at = _read_started(session)
            identity = identity_in(session)
            for content_id, database_id in wanted:
                if database_id != identity:
                    outcomes[(content_id, database_id)] = Outcome.refused(
                        content_id,
                        WRONG_DATABASE,
                        f"enqueued for database {database_id}, this worker's database is {identity}",
                    )
            ours = {request[0]: request for request in wanted if request[1] == identity}
            posts, skips = _posts(session, list(ours), Post)
            for content_id, reason in skips.items():
                outcomes[ours[content_id]] = Outcome.skipped(content_id, reason)
            others = _other_posts(session, posts, OtherPosts)
            bars = DatabaseBarSource(session, calendar)
            for post in sorted(posts, key=lambda post: post.published_at):
                try:
                    reactions = post_reactions(post, bars, calendar, market, others[post.source])
                    paths = event_paths(post, bars, calendar, market, reactions)
                except Exception as error:
                    if is_infrastructure_failure(error):
                        raise
                    outcomes[ours[post.content_id]] = Outcome(
                        post.content_id, FAILED, error=first_line(error)
                    )
                    continue
                computed[post.content_id] = ([r.to_json() for r in reactions], [p.to_json() for p in paths])
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
        raise
    stored = _store(url, computed, read_at)
    outcomes.update({ours[content_id]: outcome for content_id, outcome in stored.items()})
    return [outcomes[request] for request in wanted]


def _read_started(session) -> datetime:
    """When the reactions read now count as computed: the database's clock (that of
    ``price_imports.finished_at``) as the read begins. Not when they are stored: an import that lands
    between the read and the store is then later than them, and the sweep computes them again
    (``reactions_due``); the import's own enqueue finds their job running and leaves it."""
    now = session.scalar(select(func.now()))
    return now - SQLITE_CLOCK_MARGIN if session.get_bind().dialect.name == "sqlite" else now


def _posts(session, ids: list[int], post_class) -> tuple[list, dict[int, str]]:
    """The posts among ``ids`` that can react (published, linked to assets), and why the others cannot."""
    rows = {
        content_id: (published_at, source)
        for content_id, published_at, source in session.execute(
            select(Content.id, Content.published_at, Content.source).where(Content.id.in_(ids))
        )
    }
    symbols: dict[int, list[str]] = {}
    for content_id, symbol in session.execute(
        select(ContentAsset.content_id, ContentAsset.symbol)
        .where(ContentAsset.content_id.in_(ids))
        .order_by(ContentAsset.content_id, ContentAsset.symbol)
    ):
        symbols.setdefault(content_id, []).append(symbol)
    extracted = with_entities(session, ids)
    posts, skips = [], {}
    for content_id in ids:
        if content_id not in rows:
            skips[content_id] = CONTENT_NOT_FOUND
        elif rows[content_id][0] is None:
            skips[content_id] = NO_PUBLICATION_TIME
        elif content_id not in extracted:
            skips[content_id] = NO_ENTITIES
        else:
            published, source = rows[content_id]
            posts.append(post_class(content_id, _utc(published), source, tuple(symbols.get(content_id, ()))))
    return posts, skips


def _other_posts(session, posts: list, others_class) -> Mapping[str, Any]:
    """Per source of ``posts``: that source's posts around them (the isolation score's rivals)."""
    found: dict[str, Any] = {}
    for source in {post.source for post in posts}:
        times = [post.published_at for post in posts if post.source == source]
        rows = session.execute(
            select(Content.id, Content.published_at).where(
                Content.source == source,
                Content.published_at >= min(times) - ISOLATION_MARGIN,
                Content.published_at <= max(times) + ISOLATION_MARGIN,
            )
        )
        found[source] = others_class.of([(content_id, _utc(moment)) for content_id, moment in rows])
    return found


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC (SQLite gives back UTC wall-clock time without a zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _store(
    url: str, computed: dict[int, tuple[list[dict], list[dict]]], computed_at: datetime
) -> dict[int, Outcome]:
    """Replace the contents' reactions in one transaction; on a post's own failure, each in its own."""
    if not computed:
        return {}
    try:
        return _store_in_one(url, computed, computed_at)
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
    outcomes = {}
    for content_id, item in computed.items():
        try:
            outcomes.update(_store_in_one(url, {content_id: item}, computed_at))
        except Exception as error:
            if is_infrastructure_failure(error):
                raise infrastructure_error(error) from error
            outcomes[content_id] = Outcome(content_id, FAILED, error=first_line(error))
    return outcomes


def _store_in_one(
    url: str, computed: dict[int, tuple[list[dict], list[dict]]], computed_at: datetime
) -> dict[int, Outcome]:
    with session_scope(url) as session:
        lock_contents(session, computed)
        stored = replace_reactions(session, computed, computed_at)
    outcomes = {}
    for content_id in computed:
        if content_id not in stored:  # deleted meanwhile
            outcomes[content_id] = Outcome.skipped(content_id, CONTENT_NOT_FOUND)
            continue
        statuses: dict[str, int] = {}
        for record in computed[content_id][0]:
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1
        outcomes[content_id] = Outcome(content_id, REACTED, reactions=statuses)
    return outcomes


# -- when reactions are enqueued ---------------------------------------------------------------------

#: days before an import's first bar whose posts' windows may reach into it (a window of a few
#: sessions over a long weekend).
WINDOW_REACH = timedelta(days=7)
#: days after an import's last bar whose posts' baselines may read it (60 sessions are ~90 days).
BASELINE_REACH = timedelta(days=100)
#: posts the hourly sweep enqueues reactions for at most, per sweep (missing or made stale by an import).
REACTIONS_PER_SWEEP = 100_000


def prices_stored(session) -> bool:
    """Whether the database holds any price bar (else a reaction can only say ``no_prices``)."""
    from db.models import PriceBar

    return session.scalar(select(PriceBar.symbol).limit(1)) is not None


def after_classification(connection, config: Settings, outcomes: Sequence[Outcome], log=None) -> None:
    """Enqueue the reactions of the contents these outcomes linked to assets, when prices are stored.

    A Redis or database failure here is logged and left to the hourly sweep, which enqueues missing
    reactions: the classifications are stored already."""
    linked = [outcome.content_id for outcome in outcomes if outcome.assets is not None]
    if not linked:
        return
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.queue import enqueue_reactions

    try:
        with session_scope(config.database_url) as session:
            if not prices_stored(session):
                return
        enqueue_reactions(connection, config.database_url, linked, config.queue_name)
    except (RedisError, SQLAlchemyError) as error:
        if log is not None:
            log.warning(
                "reactions of %d contents not enqueued now (%s): the hourly sweep enqueues them",
                len(linked),
                first_line(error),
            )


def posts_covered(session, symbols: Sequence[str], first: datetime, last: datetime) -> list[int]:
    """The linked, published posts whose windows or baselines bars of ``symbols`` from ``first`` to
    ``last`` can reach, by id."""
    statement = (
        select(Content.id)
        .join(ContentAsset, ContentAsset.content_id == Content.id)
        .where(
            ContentAsset.symbol.in_(list(symbols)),
            Content.published_at >= first - WINDOW_REACH,
            Content.published_at <= last + BASELINE_REACH,
        )
        .distinct()
        .order_by(Content.id)
    )
    return list(session.scalars(statement))


def record_import(
    database_url: str, symbols: Sequence[str], first: datetime, last: datetime, bars: int
) -> int:
    """Remember an import that added bars (``price_imports``), for the sweep's staleness check; its id."""
    from db.models import PriceImport

    with session_scope(database_url) as session:
        row = PriceImport(
            symbols=sorted(symbols),
            first_ts=first,
            last_ts=last,
            bars=bars,
            posts_from=first - WINDOW_REACH,
            posts_until=last + BASELINE_REACH,
        )
        session.add(row)
        session.flush()
        return row.id


def reactions_due(session, limit: int = REACTIONS_PER_SWEEP) -> list[int]:
    """Posts whose reaction is missing (linked and published, with prices stored) or older than an
    import of prices that covers them: what the hourly sweep enqueues, oldest first."""
    from sqlalchemy import exists, or_

    from db.models import ContentEntities, PriceImport, Reaction

    if not prices_stored(session):
        return []
    computed = (  # the post's own oldest reaction (correlated through the EXISTS below)
        select(func.min(Reaction.computed_at))
        .where(Reaction.content_id == Content.id)
        .correlate(Content)
        .scalar_subquery()
    )
    stale = exists().where(
        PriceImport.finished_at >= computed,  # the same second (SQLite) counts: computed again, to be sure
        Content.published_at >= PriceImport.posts_from,
        Content.published_at <= PriceImport.posts_until,
    )
    missing = ~exists().where(Reaction.content_id == Content.id)
    statement = (
        select(Content.id)
        .where(
            Content.published_at.is_not(None),
            exists().where(ContentEntities.content_id == Content.id),
            or_(missing, stale),
        )
        .order_by(Content.id)
        .limit(limit)
    )
    return list(session.scalars(statement))
