"""Test helper: reaction records and event paths of the report's seeded posts (``tests.report_seed``),
written straight into the database, and the report's reaction figures computed from them here, in plain
Python (never by the code under test): hit rates with Wilson's interval by its formula, means and
spreads by their definitions.

The records are hand-made (``Reaction.to_json()``'s shape, the fields the report reads); which of them
are hits, misses, zero moves, incomplete or awaiting prices is written beside each.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete

from db.entity_store import AssetRow, EntityRows, save_entities
from db.models import ContentAsset, ContentEntities
from db.reaction_store import replace_reactions
from db.session import session_scope
from tests.report_seed import POSTS, SeedPost

#: the event-study grid of the seeded paths, trading minutes from the post.
GRID = [-60, 0, 60, 390]
#: the normal quantile of 97.5%: Wilson's 95% interval, and the |z| above which a two-sided p is below 0.05.
Z_95 = 1.959963984540054
BY_EXTERNAL = {post.external_id: post for post in POSTS}


@dataclass(frozen=True)
class SeedReaction:
    external_id: str
    symbol: str
    window: str
    abnormal: float | None
    z: float | None
    status: str = "ok"

    @property
    def complete(self) -> bool:
        return self.status == "ok"

    @property
    def p_value(self) -> float | None:
        return None if self.z is None else math.erfc(abs(self.z) / math.sqrt(2))

    @property
    def significance(self) -> str | None:
        p = self.p_value
        if p is None:
            return None
        return "p<0.01" if p < 0.01 else "p<0.05" if p < 0.05 else "n.s."

    def record(self, content_id: int) -> dict[str, Any]:
        post = BY_EXTERNAL[self.external_id]
        assert post.published is not None
        return {
            "content_id": content_id, "symbol": self.symbol, "window": self.window, "status": self.status,
            "calendar": "XNYS", "resolution": "1m", "posted_at": post.published.isoformat(),
            "market_open_at_post": True, "window_start": post.published.isoformat(),
            "started_at_next_open": False, "base_at": post.published.isoformat(), "end_at": None,
            "base_price": 100.0, "end_price": None, "return": self.abnormal,
            "abnormal_return": self.abnormal, "z_score": self.z, "p_value": self.p_value,
            "significance": self.significance, "complete": self.complete,
            "missing_bars": 0 if self.complete else 3, "baseline": None,
            "isolation": {"score": 1.0, "other_posts": 0, "other_post_ids": []},
        }  # fmt: skip


#: Sentiments (report_seed): t1 positive, t2 negative, x1 neutral, x2 negative, t3 positive, t0 negative;
#: n1 has no published_at, so no reaction. t3 is linked to SPY and AAPL.
REACTIONS = [
    SeedReaction("t1", "SPY", "1h", 0.012, 4.0),  # positive, up: hit; significant
    SeedReaction("t2", "SPY", "1h", -0.004, -1.2),  # negative, down: hit
    SeedReaction("x1", "SPY", "1h", 0.003, 0.9),  # neutral: no hit rate
    SeedReaction("x2", "SPY", "1h", 0.006, 2.2),  # negative, up: miss; significant
    SeedReaction("t3", "SPY", "1h", 0.002, 0.5),  # hit
    SeedReaction("t3", "AAPL", "1h", 0.02, 3.1),  # hit; significant
    SeedReaction("t0", "SPY", "1h", -0.015, -5.0),  # hit; significant
    SeedReaction("t1", "SPY", "1d", -0.01, -1.5),  # positive, down: miss
    SeedReaction("t2", "SPY", "1d", -0.02, None, "incomplete"),  # left out
    SeedReaction("x1", "SPY", "1d", -0.001, -0.1),  # neutral
    SeedReaction("x2", "SPY", "1d", -0.03, -3.0),  # hit; significant
    SeedReaction("t3", "SPY", "1d", None, None, "awaiting_prices"),  # left out
    SeedReaction("t3", "AAPL", "1d", 0.005, 0.7),  # hit
    SeedReaction("t0", "SPY", "1d", 0.0, 0.0),  # zero move: counted apart
]
#: (external id, symbol) -> cumulative abnormal return on GRID (None: a missing bar).
PATHS = {
    ("t1", "SPY"): [0.0, 0.0, 0.012, -0.01],
    ("t2", "SPY"): [0.001, 0.0, -0.004, None],
    ("x1", "SPY"): [0.0, 0.0, 0.003, -0.001],
    ("x2", "SPY"): [-0.002, 0.0, 0.006, -0.03],
    ("t3", "SPY"): [0.0, 0.0, 0.002, None],
    ("t3", "AAPL"): [0.003, 0.0, 0.02, 0.005],
    ("t0", "SPY"): [0.0, 0.0, -0.015, 0.0],
}
#: t3's linked assets, with the words that named them (its stored entities are replaced by these).
T3_ASSETS = {"AAPL": ("equity", "cashtag", ["$AAPL"]), "SPY": ("etf", "alias", ["stock market", "S&P 500"])}
WINDOWS = ["1h", "1d"]


def seed_reactions(database_url: str, ids: dict[str, int]) -> None:
    """Store REACTIONS and PATHS for the seeded posts (content ids by external id), and t3's assets."""
    computed: dict[int, tuple[list[dict], list[dict]]] = defaultdict(lambda: ([], []))
    for reaction in REACTIONS:
        computed[ids[reaction.external_id]][0].append(reaction.record(ids[reaction.external_id]))
    for (external, symbol), car in PATHS.items():
        content_id = ids[external]
        computed[content_id][1].append(
            {"content_id": content_id, "symbol": symbol, "minutes": GRID, "car": car}
        )
    t3 = ids["t3"]
    links = [
        AssetRow(symbol, kind, method, len(words)) for symbol, (kind, method, words) in T3_ASSETS.items()
    ]
    mentions = [
        {"symbol": symbol, "kind": kind, "start": 0, "end": len(word), "text": word, "method": method}
        for symbol, (kind, method, words) in T3_ASSETS.items()
        for word in words
    ]
    with session_scope(database_url) as session:
        session.execute(delete(ContentAsset).where(ContentAsset.content_id == t3))
        session.execute(delete(ContentEntities).where(ContentEntities.content_id == t3))
        document = {"schema": 1, "mentions": mentions, "links": [link.__dict__ for link in links]}
        save_entities(session, {t3: EntityRows(document, "tests", links)})
        assert replace_reactions(session, dict(computed)) == set(computed)


# -- the expected figures ------------------------------------------------------------------------


def wilson(hits: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval by its formula (Wilson 1927; Newcombe 1998, method 3)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def selected(posts: list[SeedPost]) -> list[SeedReaction]:
    keep = {post.external_id for post in posts}
    return [reaction for reaction in REACTIONS if reaction.external_id in keep]


def expected_hit_rates(reactions: list[SeedReaction]) -> dict[str, dict[str, Any]]:
    """Per window: n, hits, zero moves of the complete windows of positive and negative posts."""
    rates: dict[str, dict[str, Any]] = {}
    for reaction in reactions:
        sentiment = BY_EXTERNAL[reaction.external_id].sentiment
        if not reaction.complete or sentiment == "neutral":
            continue
        rate = rates.setdefault(reaction.window, {"n": 0, "hits": 0, "zero_moves": 0})
        assert reaction.abnormal is not None
        if reaction.abnormal == 0:
            rate["zero_moves"] += 1
            continue
        rate["n"] += 1
        rate["hits"] += (reaction.abnormal > 0) == (sentiment == "positive")
    return rates


def expected_abnormal_returns(reactions: list[SeedReaction]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per window and sentiment: n, mean, sample standard deviation, standard error."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for reaction in reactions:
        if reaction.complete and reaction.abnormal is not None:
            values[reaction.window][BY_EXTERNAL[reaction.external_id].sentiment].append(reaction.abnormal)
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    for window, by_sentiment in values.items():
        for sentiment, found in by_sentiment.items():
            n = len(found)
            mean = sum(found) / n
            stdev = math.sqrt(sum((v - mean) ** 2 for v in found) / (n - 1)) if n > 1 else None
            figures.setdefault(window, {})[sentiment] = {
                "n": n,
                "mean": mean,
                "stdev": stdev,
                "stderr": None if stdev is None else stdev / math.sqrt(n),
            }
    return figures


def expected_moves(reactions: list[SeedReaction], limit: int = 10) -> list[tuple[str, str, str]]:
    """(external id, symbol, window) of the significant reactions, largest |z| first."""
    significant = [r for r in reactions if r.z is not None and abs(r.z) > Z_95]
    significant.sort(key=lambda r: -abs(r.z or 0.0))
    return [(r.external_id, r.symbol, r.window) for r in significant[:limit]]


def expected_curve(posts: list[SeedPost]) -> dict[str, list[float | None]]:
    """Sentiment -> the mean of its posts' paths at each grid point (None where no path has a value)."""
    keep = {post.external_id for post in posts}
    columns: dict[str, list[list[float]]] = {}
    for (external, _), car in PATHS.items():
        if external not in keep:
            continue
        column = columns.setdefault(BY_EXTERNAL[external].sentiment, [[] for _ in GRID])
        for values, value in zip(column, car, strict=True):
            if value is not None:
                values.append(value)
    return {
        sentiment: [sum(values) / len(values) if values else None for values in column]
        for sentiment, column in columns.items()
    }
