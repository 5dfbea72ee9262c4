"""What the database says for ``/metrics``: contents by state, classifications by sentiment, reactions
by status and the significant ones by window, and cumulative histogram buckets computed in SQL from the
audit (``jobs.audit``) of recent classifications.

Every function reads only, and returns a few aggregate rows. The histograms read the classifications
stored since ``since`` (their ``created_at``), in one pass, so that a scrape costs what the window
holds, not what the table holds (bench/metrics_scrape.py measures it). Rows without the audit field a
histogram needs (stored before the field existed, or classified outside the queue) are not
observations of it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import TIMESTAMP, ColumnElement, Float, case, cast, extract, func, null, select
from sqlalchemy.orm import Session

from db.models import Classification, Consensus, Content, Reaction
from db.queries import unclassified_by_model


@dataclass(frozen=True)
class ContentStates:
    """Contents by where they stand: skipped for good (by reason), or waiting for a model's classification."""

    skipped: dict[str, int]
    #: model name -> contents not skipped that lack its classification.
    unclassified: dict[str, int]


@dataclass(frozen=True)
class CumulativeBuckets:
    """A histogram as Prometheus wants it: ``counts[i]`` observations at most ``bounds[i]``."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    #: every observation (the ``+Inf`` bucket) and their sum.
    count: int
    total: float


@dataclass(frozen=True)
class ForwardPassShape:
    """Classifications stored from batches of one shape: ``items`` texts read in ``passes`` (rows each)."""

    passes: tuple[int, ...]
    items: int
    #: classifications of the window that carry this shape.
    stored: int


@dataclass(frozen=True)
class RecentAudit:
    """The histograms of the recent classifications: model seconds per item, enqueue to stored
    seconds, and the batch shapes behind the forward passes."""

    model_seconds: CumulativeBuckets
    queue_seconds: CumulativeBuckets
    shapes: list[ForwardPassShape]


def content_states(session: Session, models: Sequence[str]) -> ContentStates:
    """Contents skipped for good by ``skip_reason``, and per model the contents it has not classified."""
    rows = session.execute(
        select(Content.skip_reason, func.count())
        .where(Content.skip_reason.is_not(None))
        .group_by(Content.skip_reason)
    )
    return ContentStates(
        skipped=dict(rows.tuples().all()), unclassified=unclassified_by_model(session, models)
    )


def classifications_by_sentiment(session: Session) -> dict[tuple[str, str, str], int]:
    """Current classifications by (model, sentiment, model version)."""
    rows = session.execute(
        select(
            Classification.model, Classification.sentiment, Classification.model_version, func.count()
        ).group_by(Classification.model, Classification.sentiment, Classification.model_version)
    )
    return {(model, sentiment, version): count for model, sentiment, version, count in rows}


def consensus_by_sentiment(session: Session) -> dict[tuple[str, bool], int]:
    """Consensus rows (one per content) by (sentiment, ambiguous)."""
    rows = session.execute(
        select(Consensus.sentiment, Consensus.ambiguous, func.count()).group_by(
            Consensus.sentiment, Consensus.ambiguous
        )
    )
    return {(sentiment, bool(ambiguous)): count for sentiment, ambiguous, count in rows}


def reactions_by_status(session: Session) -> dict[str, int]:
    """Stored reactions (post, asset, window) by status (``ix_reactions_status``)."""
    rows = session.execute(select(Reaction.status, func.count()).group_by(Reaction.status))
    return {status: count for status, count in rows}


def significant_reactions_by_window(session: Session, levels: Sequence[str]) -> dict[str, int]:
    """Stored reactions whose ``significance`` is one of ``levels`` (``p<0.01``, ``p<0.05``), by window:
    only those rows are read (``ix_reactions_significance``), not every reaction."""
    rows = session.execute(
        select(Reaction.window, func.count())
        .where(Reaction.significance.in_(list(levels)))
        .group_by(Reaction.window)
    )
    return {window: count for window, count in rows}


def _seconds_between(session: Session, earlier: ColumnElement, later: ColumnElement) -> ColumnElement:
    """``later - earlier`` in seconds, both ISO 8601 texts with a UTC offset (as the audit writes them)."""
    if session.get_bind().dialect.name == "postgresql":
        moment = TIMESTAMP(timezone=True)
        return extract("epoch", cast(later, moment) - cast(earlier, moment))
    # julianday's days lose ~50 µs in a double: the audit's times are whole milliseconds, so round to them.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def recent_audit(
    session: Session, since: datetime, model_bounds: Sequence[float], queue_bounds: Sequence[float]
) -> dict[str, RecentAudit]:
    """The histograms' figures per model name, in one read of the classifications stored since ``since``.

    Each row's audit is read once, its two timings put in their buckets, and the rows grouped by
    (model, bucket, bucket, batch shape): the database returns one row per combination in use, which
    are added up here.
    """
    meta = Classification.meta
    recent = (
        select(
            Classification.model.label("name"),
            cast(meta[("processing", "model_seconds")].as_float(), Float).label("model"),
            cast(
                _seconds_between(
                    session,
                    meta[("processing", "batch", "enqueued_at")].as_string(),
                    meta[("processing", "classified_at")].as_string(),
                ),
                Float,
            ).label("queue"),
            meta[("processing", "batch", "forward_passes")].as_string().label("passes"),
            meta[("processing", "batch", "items")].as_integer().label("batch_items"),
        )
        .where(Classification.created_at >= since)
        .cte("recent")
        .prefix_with("MATERIALIZED")  # the JSON read once per row, not once per comparison
    )
    model_bucket = _bucket_index(recent.c.model, model_bounds).label("model_bucket")
    queue_bucket = _bucket_index(recent.c.queue, queue_bounds).label("queue_bucket")
    grouped = select(
        recent.c.name,
        model_bucket,
        queue_bucket,
        recent.c.passes,
        recent.c.batch_items,
        func.count(),
        func.count(recent.c.model),
        func.sum(recent.c.model),
        func.count(recent.c.queue),
        func.sum(recent.c.queue),
    ).group_by(recent.c.name, model_bucket, queue_bucket, recent.c.passes, recent.c.batch_items)
    tallies: dict[str, tuple[_Tally, _Tally, dict[tuple[str, int], int]]] = {}
    for row in session.execute(grouped):
        (
            name,
            model_index,
            queue_index,
            passes,
            items,
            rows,
            model_count,
            model_sum,
            queue_count,
            queue_sum,
        ) = row
        model, queue, stored = tallies.setdefault(name, (_Tally(model_bounds), _Tally(queue_bounds), {}))
        model.add(model_index, model_count, model_sum)
        queue.add(queue_index, queue_count, queue_sum)
        if passes is not None and items:
            stored[(passes, items)] = stored.get((passes, items), 0) + rows
    return {
        name: RecentAudit(
            model.buckets(),
            queue.buckets(),
            [
                ForwardPassShape(tuple(json.loads(passes)), items, count)
                for (passes, items), count in stored.items()
            ],
        )
        for name, (model, queue, stored) in sorted(tallies.items())
    }


def _bucket_index(value: ColumnElement, bounds: Sequence[float]) -> ColumnElement:
    """The index of the first bound ``value`` is at most (``len(bounds)``: above them all; NULL: no value)."""
    whens = [(value.is_(None), null()), *[(value <= bound, index) for index, bound in enumerate(bounds)]]
    return case(*whens, else_=len(bounds))


class _Tally:
    """Observations per bucket index, turned into cumulative buckets."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.per_bucket = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, index: int | None, count: int, total: float | None) -> None:
        if index is None or not count:
            return
        self.per_bucket[index] += count
        self.total += float(total or 0.0)

    def buckets(self) -> CumulativeBuckets:
        cumulative = list(itertools.accumulate(self.per_bucket))
        return CumulativeBuckets(self.bounds, tuple(cumulative[:-1]), cumulative[-1], self.total)
