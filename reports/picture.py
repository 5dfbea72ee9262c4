"""The sentiment picture's figures: posts per period by sentiment, the mean signed score, the
confidence and margin distributions, the most negative and most positive recent posts, and with
several models their sentiments side by side, their agreement (Cohen's kappa) and the ambiguous posts;
and, once reactions are stored, what the market did after the posts (``reports.reactions``). A post
counts once, with its consensus (with one model: that model's reading).

Built from the database's aggregates (``reports.sentiment_queries``) for one ``Selection``. Periods are
days, ISO weeks (from Monday) or calendar months, chosen by the span of the selected posts' days; every
period between the first and the last is present, empty ones with no posts and no mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from consensus.agreement import PairAgreement, pair_agreement
from db.models import SENTIMENTS
from model.model_marks import random_weight_count, random_weights_warning
from model.visible_text import visible_text
from reports import sentiment_queries as queries
from reports.reactions import reactions_section
from reports.selection import Selection
from reports.sentiment_queries import ScoredPost

#: days of posts (first to last, both counted) still pictured per day; longer spans per week.
DAILY_MAX_DAYS = 92
#: days of posts still pictured per week; longer spans per month.
WEEKLY_MAX_DAYS = 3 * 366
#: equal bins over [0, 1] in the confidence and margin distributions.
DISTRIBUTION_BINS = 20
#: days (ending on the selection's last day, which counts) whose posts are "recent" for the extremes.
RECENT_DAYS = 30
#: posts in each list of extremes (most negative, most positive).
EXTREME_POSTS = 5
#: ambiguous posts listed (least confident first).
AMBIGUOUS_POSTS = 20
#: the periods a picture can be drawn in, shortest first.
GRANULARITIES = ("day", "week", "month")


def granularity_for(first: date, last: date) -> str:
    """``day`` for spans up to DAILY_MAX_DAYS days, ``week`` up to WEEKLY_MAX_DAYS, else ``month``."""
    days = (last - first).days + 1
    if days <= DAILY_MAX_DAYS:
        return "day"
    return "week" if days <= WEEKLY_MAX_DAYS else "month"


def period_start(day: date, granularity: str) -> date:
    """The first day of the period (day, ISO week from Monday, month) that holds ``day``."""
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")


def next_period(start: date, granularity: str) -> date:
    """The first day of the period after the one starting on ``start``."""
    if granularity == "day":
        return start + timedelta(days=1)
    if granularity == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Period:
    """The classified posts of one period."""

    start: date
    granularity: str
    #: posts per sentiment, every sentiment present.
    posts: dict[str, int]
    #: posts whose signed score is known.
    scored: int = 0
    signed_sum: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.posts.values())

    @property
    def mean_signed(self) -> float | None:
        """The mean of positive minus negative probability over the period's posts; None when none."""
        return self.signed_sum / self.scored if self.scored else None

    @property
    def label(self) -> str:
        """``2024-01-05`` (day), ``2024-W01`` (ISO week), ``2024-01`` (month)."""
        if self.granularity == "week":
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        if self.granularity == "month":
            return self.start.strftime("%Y-%m")
        return self.start.isoformat()

    @property
    def last_day(self) -> date:
        return next_period(self.start, self.granularity) - timedelta(days=1)


def periods_from(rows: list[queries.DaySentiment], granularity: str) -> list[Period]:
    """Every period from the first row's to the last row's, each with the sums of its days."""
    if not rows:
        return []
    sums: dict[date, dict[str, float]] = {}
    for row in rows:
        start = period_start(row.day, granularity)
        bucket = sums.setdefault(start, {"scored": 0, "signed_sum": 0.0})
        bucket[row.sentiment] = bucket.get(row.sentiment, 0) + row.posts
        bucket["scored"] += row.scored
        bucket["signed_sum"] += row.signed_sum
    periods = []
    start, last = min(sums), max(sums)
    while start <= last:
        bucket = sums.get(start, {})
        periods.append(
            Period(
                start=start,
                granularity=granularity,
                posts={sentiment: int(bucket.get(sentiment, 0)) for sentiment in SENTIMENTS},
                scored=int(bucket.get("scored", 0)),
                signed_sum=float(bucket.get("signed_sum", 0.0)),
            )
        )
        start = next_period(start, granularity)
    return periods


@dataclass(frozen=True)
class Distribution:
    """How many posts of each sentiment fall in each of ``bins`` equal bins over [0, 1]."""

    name: str
    bins: int
    #: sentiment -> posts per bin (bin i holds [i / bins, (i + 1) / bins); the last one holds 1.0).
    counts: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(sum(per_bin) for per_bin in self.counts.values())

    def bounds(self, index: int) -> tuple[float, float]:
        return index / self.bins, (index + 1) / self.bins

    def bin_total(self, index: int) -> int:
        return sum(per_bin[index] for per_bin in self.counts.values())


def distribution_from(name: str, counts: dict[tuple[int, str], int], bins: int) -> Distribution:
    per_sentiment = {sentiment: [0] * bins for sentiment in SENTIMENTS}
    for (index, sentiment), posts in counts.items():
        per_sentiment.setdefault(sentiment, [0] * bins)[index] += posts
    return Distribution(name=name, bins=bins, counts=per_sentiment)


@dataclass(frozen=True)
class AmbiguousPost:
    """A post whose models' consensus is ambiguous, with each model's label and confidence."""

    content_id: int
    day: date
    source: str
    sentiment: str
    confidence: float
    agreement: float
    #: model name -> (sentiment, confidence).
    readings: dict[str, tuple[str, float]]
    text: str


@dataclass(frozen=True)
class SentimentPicture:
    """Everything the page shows, for one selection."""

    selection: Selection
    generated_at: datetime
    granularity: str
    #: the first and last day with a selected post (None when nothing is selected).
    first_day: date | None
    last_day: date | None
    periods: list[Period]
    confidence: Distribution
    margin: Distribution
    #: first day of the "recent" window of the extremes (None when nothing is selected).
    recent_since: date | None
    most_negative: list[ScoredPost]
    most_positive: list[ScoredPost]
    #: selected posts without published_at (placed on the day they were imported).
    undated: int
    model_versions: dict[str, int]
    #: classifications in the whole database, whatever the selection.
    database_classifications: int
    #: filter choices: the sources and the most frequent authors of classified posts.
    sources: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    #: several models: each model's classifications per sentiment in the selection (configured ones first).
    model_sentiments: dict[str, dict[str, int]] = field(default_factory=dict)
    #: several models: the agreement of each pair on the selected posts both classified.
    agreement: list[PairAgreement] = field(default_factory=list)
    #: several models: the selection's ambiguous posts (least confident first), and how many there are.
    ambiguous: list[AmbiguousPost] = field(default_factory=list)
    ambiguous_total: int = 0
    #: the ``reactions`` figures of the selected posts (``reports.reactions``; ``records`` 0: none yet).
    reactions: dict[str, Any] = field(default_factory=dict)

    @property
    def several_models(self) -> bool:
        return len(self.model_sentiments) > 1

    @property
    def totals(self) -> dict[str, int]:
        """Selected posts per sentiment."""
        return {sentiment: sum(p.posts[sentiment] for p in self.periods) for sentiment in SENTIMENTS}

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def mean_signed(self) -> float | None:
        scored = sum(p.scored for p in self.periods)
        return sum(p.signed_sum for p in self.periods) / scored if scored else None

    @property
    def random_weight_classifications(self) -> int:
        return random_weight_count(self.model_versions)

    @property
    def warnings(self) -> list[str]:
        """The report's warning lines (random-weight models), for the selected classifications."""
        return random_weights_warning(self.random_weight_classifications)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC (SQLite gives back UTC wall-clock time without a zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _models_side_by_side(
    session: Session, selection: Selection, models: Sequence[str]
) -> tuple[dict[str, dict[str, int]], list[PairAgreement], list[AmbiguousPost], int]:
    """Per-model sentiments, pairwise agreement and ambiguous posts of ``selection`` (configured models
    first, then any other model with classifications in it)."""
    found = queries.model_sentiments_in(session, selection)
    names = [*[name for name in models if name in found], *sorted(set(found) - set(models))]
    sentiments = {name: {s: found[name].get(s, 0) for s in SENTIMENTS} for name in names}
    if len(names) < 2:
        return sentiments, [], [], 0
    pairs = [
        pair_agreement(first, second, queries.joint_labels_in(session, selection, first, second))
        for index, first in enumerate(names)
        for second in names[index + 1 :]
    ]
    posts = [
        AmbiguousPost(
            content_id=content.id,
            day=_utc(content.published_at or content.created_at).date(),
            source=content.source,
            sentiment=consensus.sentiment,
            confidence=consensus.confidence,
            agreement=consensus.agreement,
            readings={
                name: (str(reading.get("sentiment")), float(reading.get("confidence") or 0.0))
                for name, reading in consensus.models.items()
            },
            text=visible_text(content.text),
        )
        for consensus, content in queries.ambiguous_in(session, selection, AMBIGUOUS_POSTS)
    ]
    return sentiments, pairs, posts, queries.ambiguous_count_in(session, selection)


def build_picture(
    session: Session, selection: Selection, now: datetime | None = None, models: Sequence[str] = ()
) -> SentimentPicture:
    """The picture of ``selection`` as the database holds it now (reads only); ``models``: the configured
    model names, in order (VOLFEFE_MODELS)."""
    model_sentiments, agreement, ambiguous, ambiguous_total = _models_side_by_side(session, selection, models)
    rows = queries.day_sentiments(session, selection)
    granularity = granularity_for(rows[0].day, rows[-1].day) if rows else "day"
    recent_since = rows[-1].day - timedelta(days=RECENT_DAYS - 1) if rows else None
    extremes: dict[str, list[ScoredPost]] = {"negative": [], "positive": []}
    if recent_since is not None:
        for most in extremes:
            extremes[most] = queries.extreme_posts(session, selection, recent_since, EXTREME_POSTS, most)
    return SentimentPicture(
        selection=selection,
        generated_at=now or datetime.now(UTC),
        granularity=granularity,
        first_day=rows[0].day if rows else None,
        last_day=rows[-1].day if rows else None,
        periods=periods_from(rows, granularity),
        confidence=distribution_from(
            "confidence", queries.confidence_bins(session, selection, DISTRIBUTION_BINS), DISTRIBUTION_BINS
        ),
        margin=distribution_from(
            "margin", queries.margin_bins(session, selection, DISTRIBUTION_BINS), DISTRIBUTION_BINS
        ),
        recent_since=recent_since,
        most_negative=extremes["negative"],
        most_positive=extremes["positive"],
        undated=queries.undated_posts(session, selection),
        model_versions=queries.model_versions_in(session, selection),
        database_classifications=queries.classification_total(session),
        sources=queries.sources(session),
        authors=queries.frequent_authors(session),
        model_sentiments=model_sentiments,
        agreement=agreement,
        ambiguous=ambiguous,
        ambiguous_total=ambiguous_total,
        reactions=reactions_section(session, selection),
    )
