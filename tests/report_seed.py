"""Test helper: classified posts on chosen days, written straight into a migrated database, and the
sentiment picture's figures computed from them here, in plain Python (never by the code under test).

Scores are chosen away from the edges of the 20 distribution bins, so the expected bin of each value
cannot depend on rounding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from db.models import Content
from db.session import session_scope
from jobs.audit import margin
from tests.rows import store_classification

#: the model_version of the seeded classifications (a real model's shape: no random weights).
MODEL_VERSION = "yiyanghkust/finbert-tone@rev+bf16"
#: bins of the distributions, as the page draws them.
BINS = 20
#: a post text whose visible text keeps characters the page must escape (it is not markup, so the
#: visible-text reader keeps it as written).
SCRIPT_TEXT = 'Stocks <crash> & "burn" after tariffs, x<y'


@dataclass(frozen=True)
class SeedPost:
    external_id: str
    source: str
    author: str | None
    #: None: the post has no published_at, and ``created`` is its day.
    published: datetime | None
    created: datetime
    positive: float
    negative: float
    neutral: float
    #: False: ``meta`` holds the raw scores only (a classification from before the audit).
    audited: bool = True
    text: str = ""
    model_version: str = MODEL_VERSION

    @property
    def scores(self) -> dict[str, float]:
        return {"positive": self.positive, "negative": self.negative, "neutral": self.neutral}

    @property
    def sentiment(self) -> str:
        return max(self.scores, key=self.scores.__getitem__)

    @property
    def confidence(self) -> float:
        return self.scores[self.sentiment]

    @property
    def margin(self) -> float:
        return round(margin(self.scores), 6)

    @property
    def signed(self) -> float:
        return self.positive - self.negative

    @property
    def day(self) -> date:
        return (self.published or self.created).date()


def at(day: str, time: str = "12:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}:00").replace(tzinfo=UTC)


IMPORTED = at("2024-01-14", "06:00")

#: the main set: January 2024 plus one old post (2023-11-01, out of the "recent" window).
POSTS = [
    SeedPost(
        "t1", "truth", "trump", at("2024-01-10", "10:00"), IMPORTED, 0.82, 0.11, 0.07, text="Great deal!"
    ),
    SeedPost(
        "t2", "truth", "trump", at("2024-01-10", "23:30"), IMPORTED, 0.18, 0.71, 0.11, text="Very unfair."
    ),
    SeedPost(
        "x1", "twitter", "trump", at("2024-01-11", "09:00"), IMPORTED, 0.27, 0.10, 0.63, text="Meeting."
    ),
    SeedPost(
        "x2", "twitter", "biden", at("2024-01-11", "00:00"), IMPORTED, 0.04, 0.91, 0.05, text=SCRIPT_TEXT
    ),
    SeedPost("n1", "news", None, None, at("2024-01-13", "08:00"), 0.53, 0.41, 0.06, text="Markets mixed."),
    SeedPost(
        "t3",
        "truth",
        "trump",
        at("2024-01-13", "18:00"),
        IMPORTED,
        0.96,
        0.02,
        0.02,
        audited=False,
        text="Best!",
    ),
    SeedPost("t0", "truth", "trump", at("2023-11-01", "15:00"), IMPORTED, 0.01, 0.96, 0.03, text="Old, bad."),
]
#: a post that was imported but never classified: the picture must not count it.
UNCLASSIFIED = SeedPost("u1", "truth", "trump", at("2024-01-12"), IMPORTED, 0.9, 0.05, 0.05, text="Pending.")


def seed(
    database_url: str, posts: list[SeedPost], unclassified: list[SeedPost] | None = None
) -> dict[str, int]:
    """Write ``posts`` (classified) and ``unclassified`` (not) into the database; content id by external id."""
    ids: dict[str, int] = {}
    with session_scope(database_url) as session:
        for post in [*posts, *(unclassified or [])]:
            content = Content(
                source=post.source,
                external_id=post.external_id,
                author=post.author,
                text=post.text,
                published_at=post.published,
                created_at=post.created,
            )
            session.add(content)
            session.flush()
            ids[post.external_id] = content.id
        for post in posts:
            meta = {"raw_scores": post.scores}
            if post.audited:
                meta["quality"] = {"margin": post.margin, "entropy": 0.5}
            assert store_classification(
                session,
                ids[post.external_id],
                post.sentiment,
                post.confidence,
                post.model_version,
                post.scores,
                meta,
            )
    return ids


# -- the expected figures ------------------------------------------------------------------------


def per_day(posts: list[SeedPost]) -> dict[date, dict[str, float]]:
    """Day -> {positive, negative, neutral: posts, mean: mean signed score} for the days with posts."""
    days: dict[date, list[SeedPost]] = defaultdict(list)
    for post in posts:
        days[post.day].append(post)
    return {
        day: {
            **{s: sum(p.sentiment == s for p in group) for s in ("positive", "negative", "neutral")},
            "mean": sum(p.signed for p in group) / len(group),
        }
        for day, group in sorted(days.items())
    }


def every_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def bins(values: list[tuple[float, str]]) -> dict[tuple[int, str], int]:
    """(bin, sentiment) -> posts, for values in [0, 1) cut into BINS bins."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for value, sentiment in values:
        counts[(min(int(value * BINS), BINS - 1), sentiment)] += 1
    return dict(counts)


def extremes(posts: list[SeedPost], recent_days: int, limit: int) -> tuple[list[str], list[str]]:
    """External ids of the most negative and most positive posts of the last ``recent_days`` days."""
    last = max(p.day for p in posts)
    recent = [p for p in posts if p.day >= last - timedelta(days=recent_days - 1)]
    negative = sorted((p for p in recent if p.signed < 0), key=lambda p: p.signed)[:limit]
    positive = sorted((p for p in recent if p.signed > 0), key=lambda p: -p.signed)[:limit]
    return [p.external_id for p in negative], [p.external_id for p in positive]
