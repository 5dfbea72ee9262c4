"""What the market did after the posts: the ``reactions`` section of ``volfefe report --json``, which the
text report summarises and the HTML picture draws.

The figures are ``market.statistics.reactions_summary`` over the stored reaction records and event
paths of the selected posts, each post counting with its consensus sentiment (with one model: that
model's reading); the largest significant moves are listed with their post's visible text, linked
assets and each model's label. Windows come in the configured order (VOLFEFE_REACTION_WINDOWS), then
any other stored window by length. Event paths drawn on another grid than most (VOLFEFE_EVENT_GRID
changed since they were computed) cannot be averaged with them: they are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from db.models import SENTIMENTS
from market.settings import MarketConfigError, market_settings, parse_window
from market.statistics import DEFAULT_LARGEST, DEFAULT_SIGNIFICANCE, reactions_summary
from reports import reaction_queries as queries
from reports.selection import Selection

#: the fields of a reaction record a listed move repeats.
MOVE_FIELDS = (
    "content_id",
    "symbol",
    "window",
    "posted_at",
    "market_open_at_post",
    "started_at_next_open",
    "base_at",
    "end_at",
    "return",
    "abnormal_return",
    "z_score",
    "p_value",
    "significance",
)


def reactions_section(
    session: Session,
    selection: Selection | None = None,
    *,
    limit: int = DEFAULT_LARGEST,
    level: float = DEFAULT_SIGNIFICANCE,
) -> dict[str, Any]:
    """The figures of the reactions to the posts of ``selection`` (default: every post); reads only."""
    selection = selection or Selection()
    records = queries.reaction_records(session, selection)
    paths, other_grids = on_one_grid(queries.reaction_paths(session, selection))
    sentiments = queries.reacted_sentiments(session, selection)
    summary = reactions_summary(records, paths, sentiments, limit=limit, level=level)
    windows = window_order(record["window"] for record in records)
    keys = [
        (move["content_id"], move["symbol"], move["window"]) for move in summary["largest_significant_moves"]
    ]
    whole = queries.whole_records(session, keys)
    moves = [whole[key] for key in keys if key in whole]
    posts = queries.reacted_posts(session, {move["content_id"] for move in moves})
    reacted = {record["content_id"] for record in records}
    return {
        "records": summary["records"],
        "posts": len(reacted),
        "posts_without_sentiment": len(reacted - set(sentiments)),
        "windows": windows,
        "by_status": summary["by_status"],
        "significance_level": summary["significance_level"],
        "significant": summary["significant"],
        "significant_by_window": _in_order(_significant_by_window(records, level), windows),
        "hit_rate": _in_order(summary["hit_rate"], windows),
        "abnormal_return": {
            window: _by_sentiment(by_sentiment)
            for window, by_sentiment in _in_order(summary["abnormal_return"], windows).items()
        },
        "largest_significant_moves": [_move(move, posts.get(move["content_id"])) for move in moves],
        "event_study": {
            **summary["event_study"],
            "by_sentiment": _by_sentiment(summary["event_study"]["by_sentiment"]),
            "paths": len(paths),
            "paths_on_other_grids": other_grids,
        },
    }


def on_one_grid(paths: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The paths on the grid most of them share, and how many were on another grid."""
    if not paths:
        return [], 0
    grids = Counter(tuple(path["minutes"]) for path in paths)
    grid, _ = grids.most_common(1)[0]
    kept = [path for path in paths if tuple(path["minutes"]) == grid]
    return kept, len(paths) - len(kept)


def window_order(labels: Iterable[str]) -> list[str]:
    """The distinct ``labels``: the configured windows first, in their order, then the others by length."""
    present = set(labels)
    try:
        configured = [window.label for window in market_settings().windows]
    except MarketConfigError:  # the report still reads what is stored
        configured = []
    ordered = [label for label in configured if label in present]

    def length(label: str) -> tuple[int, str]:
        try:
            window = parse_window(label)
        except MarketConfigError:
            return (1 << 30, label)
        return (window.sessions * 24 * 60 + window.minutes, label)

    return ordered + sorted(present - set(ordered), key=length)


def _in_order(by_window: Mapping[str, Any], windows: list[str]) -> dict[str, Any]:
    return {window: by_window[window] for window in windows if window in by_window}


def _by_sentiment(figures: Mapping[str, Any]) -> dict[str, Any]:
    """``figures`` (keyed by sentiment) as positive, negative, neutral, then any other label."""
    order = [*SENTIMENTS, *sorted(set(figures) - set(SENTIMENTS))]
    return {sentiment: figures[sentiment] for sentiment in order if sentiment in figures}


def _significant_by_window(records: Iterable[Mapping[str, Any]], level: float) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for record in records:
        if record.get("p_value") is not None and record["p_value"] < level:
            counts[record["window"]] += 1
    return dict(counts)


def _move(record: Mapping[str, Any], post: queries.ReactedPost | None) -> dict[str, Any]:
    """A significant move as listed: the record's figures, and its post as a reader sees it."""
    move = {name: record.get(name) for name in MOVE_FIELDS}
    move["isolation"] = (record.get("isolation") or {}).get("score")
    if post is None:  # deleted since the records were read
        return {**move, "source": None, "author": None, "text": None, "sentiment": None, "confidence": None,
                "models": {}, "assets": []}  # fmt: skip
    return {
        **move,
        "source": post.source,
        "author": post.author,
        "text": post.text,
        "sentiment": post.sentiment,
        "confidence": post.confidence,
        "models": post.models,
        "assets": [asset.to_json() for asset in post.assets],
    }
