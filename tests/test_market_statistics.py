"""market.statistics: hit rate with Wilson's interval, abnormal returns by sentiment, the largest
significant moves and the event-study curve, on records whose answers are worked out here."""

from __future__ import annotations

import json
import math

import pytest

from market.statistics import (
    abnormal_returns_by_sentiment,
    event_study_curve,
    hit_rates,
    largest_significant_moves,
    reactions_summary,
    significant_count,
    wilson_interval,
)


def record(
    content_id: int, window: str, abnormal: float | None, *, z: float | None = None, complete: bool = True
):
    p = None if z is None else math.erfc(abs(z) / math.sqrt(2))
    return {
        "content_id": content_id, "symbol": "SPY", "window": window, "status": "ok" if complete else "incomplete",
        "abnormal_return": abnormal, "complete": complete, "z_score": z, "p_value": p,
    }  # fmt: skip


def test_wilson_interval_against_worked_values() -> None:
    # 8 of 10 at 95 %: the textbook (Newcombe 1998) interval 0.4902 .. 0.9433.
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # 0 of 10: the interval still has width (Wald's would be 0 .. 0).
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and round(high, 4) == 0.2775
    assert wilson_interval(0, 0) is None
    # By the formula, at 99 %: z = 2.5758.
    z = 2.5758293035489
    n, hits = 50, 30
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(hits, n, 0.99) == pytest.approx((centre - half, centre + half))


def test_hit_rate_per_window_leaves_out_neutral_posts_zero_moves_and_incomplete_windows() -> None:
    sentiments = {1: "positive", 2: "positive", 3: "negative", 4: "negative", 5: "neutral", 6: "positive"}
    records = [
        record(1, "1h", 0.01),  # hit
        record(2, "1h", -0.002),  # miss
        record(3, "1h", -0.03),  # hit
        record(4, "1h", 0.0),  # zero move: left out, counted
        record(5, "1h", 0.02),  # neutral: left out
        record(6, "1h", 0.05, complete=False),  # incomplete: left out
        record(7, "1h", 0.05),  # no sentiment: left out
        record(1, "1d", -0.01),  # miss
    ]
    rates = hit_rates(records, sentiments)
    assert rates["1h"]["n"] == 3 and rates["1h"]["hits"] == 2 and rates["1h"]["zero_moves"] == 1
    assert rates["1h"]["hit_rate"] == pytest.approx(2 / 3)
    assert rates["1h"]["interval"] == pytest.approx(list(wilson_interval(2, 3)))
    assert (rates["1d"]["n"], rates["1d"]["hits"]) == (1, 0)


def test_mean_abnormal_return_by_sentiment_with_its_spread() -> None:
    sentiments = {1: "positive", 2: "positive", 3: "positive", 4: "negative"}
    records = [record(1, "4h", 0.01), record(2, "4h", 0.02), record(3, "4h", 0.06), record(4, "4h", -0.01)]
    figures = abnormal_returns_by_sentiment(records, sentiments)["4h"]
    positive = figures["positive"]
    # mean 0.03; deviations -0.02, -0.01, 0.03: variance (4 + 1 + 9)e-4 / 2 = 7e-4.
    assert positive["n"] == 3 and positive["mean"] == pytest.approx(0.03)
    assert positive["stdev"] == pytest.approx(math.sqrt(7e-4))
    assert positive["stderr"] == pytest.approx(math.sqrt(7e-4) / math.sqrt(3))
    assert figures["negative"] == {"n": 1, "mean": -0.01, "stdev": None, "stderr": None}


def test_the_largest_significant_moves_come_first() -> None:
    records = [record(1, "1h", 0.01, z=2.5), record(2, "1h", -0.05, z=-4.0), record(3, "1h", 0.001, z=1.0),
               record(4, "1h", None), record(5, "1d", 0.02, z=3.0)]  # fmt: skip
    assert [r["content_id"] for r in largest_significant_moves(records)] == [2, 5, 1]
    assert [r["content_id"] for r in largest_significant_moves(records, limit=1)] == [2]
    assert [r["content_id"] for r in largest_significant_moves(records, level=0.01)] == [2, 5]
    assert significant_count(records) == 3


def test_the_event_study_curve_averages_by_sentiment_and_skips_missing_points() -> None:
    sentiments = {1: "positive", 2: "positive", 3: "negative"}
    paths = [
        {"content_id": 1, "symbol": "SPY", "minutes": [-15, 0, 15], "car": [0.0, 0.0, 0.02]},
        {"content_id": 2, "symbol": "SPY", "minutes": [-15, 0, 15], "car": [0.002, 0.0, None]},
        {"content_id": 3, "symbol": "SPY", "minutes": [-15, 0, 15], "car": [None, 0.0, -0.01]},
    ]
    curve = event_study_curve(paths, sentiments)
    assert curve["minutes"] == [-15, 0, 15]
    positive = curve["by_sentiment"]["positive"]
    assert positive["mean"] == pytest.approx([0.001, 0.0, 0.02]) and positive["n"] == [2, 2, 1]
    assert positive["stderr"][0] == pytest.approx(math.sqrt(2e-6) / math.sqrt(2))
    assert curve["by_sentiment"]["negative"] == {
        "mean": [None, 0.0, -0.01],
        "stderr": [None, None, None],
        "n": [0, 1, 1],
    }
    with pytest.raises(ValueError, match="different grids"):
        event_study_curve(
            [*paths, {"content_id": 1, "symbol": "QQQ", "minutes": [0], "car": [0.0]}], sentiments
        )


def test_the_summary_is_json() -> None:
    records = [
        record(1, "1h", 0.01, z=2.5),
        {**record(2, "1h", None), "status": "awaiting_prices", "complete": False},
    ]
    paths = [{"content_id": 1, "symbol": "SPY", "minutes": [0, 15], "car": [0.0, 0.01]}]
    summary = json.loads(json.dumps(reactions_summary(records, paths, {1: "positive", 2: "negative"})))
    assert summary["records"] == 2 and summary["by_status"] == {"awaiting_prices": 1, "ok": 1}
    assert summary["significant"] == 1 and summary["hit_rate"]["1h"]["hits"] == 1
    assert summary["event_study"]["by_sentiment"]["positive"]["mean"] == [0.0, 0.01]
