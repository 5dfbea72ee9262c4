"""The report's figures over reaction records (``Reaction.to_json()``) and the posts' sentiments.

Pure functions of JSON-shaped records, so that the report can compute them from stored reactions.
``sentiments`` maps a content id to ``positive``, ``negative`` or ``neutral`` (with several models:
their consensus). A record counts when its window is complete and has an abnormal return.

- **Hit rate** (per window): a positive post followed by an abnormal return above 0, or a negative
  one by an abnormal return below 0, is a hit. Neutral posts and moves of exactly 0 are left out (the
  latter counted). The interval is Wilson's score interval: unlike the normal (Wald) interval it stays
  inside 0..1 and keeps close to its nominal coverage for the small counts and the rates near 0 or 1
  that a few dozen posts give. Each (post, symbol) is one observation: posts linked to several
  symbols weigh more, and their symbols' moves are not independent.
- **Mean abnormal return by sentiment** (per window): n, mean, standard deviation (n - 1), standard
  error (sd / sqrt n).
- **Largest significant moves**: records with a p-value below the level, by |z|.
- **Event-study curve**: the mean cumulative abnormal return at each grid point around the post, by
  sentiment, with its standard error and n (points with a missing bar are left out, not filled).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

#: confidence of the hit rate's interval.
DEFAULT_CONFIDENCE = 0.95
#: the p-value below which a move is significant for the report.
DEFAULT_SIGNIFICANCE = 0.05
#: the largest significant moves listed.
DEFAULT_LARGEST = 10
#: the sentiments whose direction is tested, and the sign each predicts.
PREDICTED_SIGN = {"positive": 1, "negative": -1}


def wilson_interval(hits: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float] | None:
    """Wilson's score interval for ``hits`` successes in ``n`` trials; None when n is 0."""
    if n == 0:
        return None
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    rate = hits / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _usable(records: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for record in records:
        if record.get("complete") and record.get("abnormal_return") is not None:
            yield record


def hit_rates(
    records: Iterable[Mapping[str, Any]],
    sentiments: Mapping[int, str],
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, dict[str, Any]]:
    """Per window: n, hits, hit_rate, the Wilson interval (``interval``: [low, high]) and zero moves."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # n, hits, zero moves
    for record in _usable(records):
        sign = PREDICTED_SIGN.get(sentiments.get(record["content_id"], ""))
        if sign is None:
            continue
        tally = counts[record["window"]]
        move = record["abnormal_return"]
        if move == 0:
            tally[2] += 1
            continue
        tally[0] += 1
        tally[1] += (move > 0) == (sign > 0)
    result = {}
    for window, (n, hits, zero) in counts.items():
        interval = wilson_interval(hits, n, confidence)
        result[window] = {
            "n": n,
            "hits": hits,
            "hit_rate": hits / n if n else None,
            "confidence": confidence,
            "interval": None if interval is None else list(interval),
            "zero_moves": zero,
        }
    return result


def _spread(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = math.fsum(values) / n
    # Two passes in floats (statistics.stdev computes in exact fractions: seconds for the 100,000 paths
    # of an event-study point, for no digit a report shows).
    stdev = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (n - 1)) if n >= 2 else None
    return {
        "n": n,
        "mean": mean,
        "stdev": stdev,
        "stderr": None if stdev is None else stdev / math.sqrt(n),
    }


def abnormal_returns_by_sentiment(
    records: Iterable[Mapping[str, Any]], sentiments: Mapping[int, str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per window, per sentiment: n, mean, stdev and stderr of the abnormal returns."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in _usable(records):
        sentiment = sentiments.get(record["content_id"])
        if sentiment is not None:
            groups[record["window"]][sentiment].append(record["abnormal_return"])
    return {
        window: {sentiment: _spread(values) for sentiment, values in sorted(by_sentiment.items())}
        for window, by_sentiment in groups.items()
    }


def largest_significant_moves(
    records: Iterable[Mapping[str, Any]], limit: int = DEFAULT_LARGEST, level: float = DEFAULT_SIGNIFICANCE
) -> list[Mapping[str, Any]]:
    """The ``limit`` records with a p-value below ``level``, largest |z| first."""
    significant = [
        record
        for record in records
        if record.get("z_score") is not None
        and record.get("p_value") is not None
        and record["p_value"] < level
    ]
    return sorted(significant, key=lambda record: -abs(record["z_score"]))[:limit]


def significant_count(records: Iterable[Mapping[str, Any]], level: float = DEFAULT_SIGNIFICANCE) -> int:
    """Records with a p-value below ``level`` (the ``/metrics`` count)."""
    return sum(1 for record in records if record.get("p_value") is not None and record["p_value"] < level)


def event_study_curve(paths: Iterable[Mapping[str, Any]], sentiments: Mapping[int, str]) -> dict[str, Any]:
    """``{"minutes": grid, "by_sentiment": {sentiment: {"mean": [...], "stderr": [...], "n": [...]}}}``:
    the mean cumulative abnormal return of ``EventPath.to_json()`` paths at each grid point (None where
    no path has a value). Paths on another grid than the first are refused (ValueError)."""
    grid: list[int] | None = None
    columns: dict[str, list[list[float]]] = {}
    for path in paths:
        if grid is None:
            grid = list(path["minutes"])
        elif list(path["minutes"]) != grid:
            raise ValueError("event paths on different grids cannot be averaged")
        sentiment = sentiments.get(path["content_id"])
        if sentiment is None:
            continue
        column = columns.setdefault(sentiment, [[] for _ in grid])
        for values, car in zip(column, path["car"], strict=True):
            if car is not None:
                values.append(car)
    curve: dict[str, Any] = {"minutes": grid or [], "by_sentiment": {}}
    for sentiment, column in sorted(columns.items()):
        points = [_spread(values) if values else None for values in column]
        curve["by_sentiment"][sentiment] = {
            "mean": [None if point is None else point["mean"] for point in points],
            "stderr": [None if point is None else point["stderr"] for point in points],
            "n": [0 if point is None else point["n"] for point in points],
        }
    return curve


def reactions_summary(
    records: list[Mapping[str, Any]],
    paths: list[Mapping[str, Any]],
    sentiments: Mapping[int, str],
    *,
    limit: int = DEFAULT_LARGEST,
    level: float = DEFAULT_SIGNIFICANCE,
) -> dict[str, Any]:
    """The ``reactions`` section of ``volfefe report --json``: every figure above, plus the counts."""
    statuses: dict[str, int] = defaultdict(int)
    for record in records:
        statuses[record["status"]] += 1
    return {
        "records": len(records),
        "by_status": dict(sorted(statuses.items())),
        "significance_level": level,
        "significant": significant_count(records, level),
        "hit_rate": hit_rates(records, sentiments),
        "abnormal_return": abnormal_returns_by_sentiment(records, sentiments),
        "largest_significant_moves": largest_significant_moves(records, limit, level),
        "event_study": event_study_curve(paths, sentiments),
    }
