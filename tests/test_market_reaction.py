"""market.reaction on synthetic bars with planted moves: the z-scores expected are computed here, by
hand, from the planted numbers.

The price is flat except for planted steps. In each of the 60 sessions before the post, a step ``x_i``
is planted 10 minutes after the post's trading offset from the open, so every baseline window (1 h,
4 h, 1 trading day, started at that offset) holds exactly that one step; the post's own windows hold
the planted reaction ``J``. So each window's return is J, the baseline returns are the x_i, and the
z-score is ``(J - mean(x)) / stdev(x)``.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest

from market.bars import InMemoryBarSource
from market.calendar import to_datetime, to_seconds, trading_calendar
from market.reaction import (
    AWAITING_PRICES,
    INCOMPLETE,
    INSUFFICIENT_BASELINE,
    NO_INTRADAY_BARS,
    OK,
    OtherPosts,
    Post,
    Reaction,
    event_paths,
    normal_two_sided_p,
    post_reactions,
)
from market.settings import MarketConfigError, market_settings, parse_event_grid
from market.synthetic import daily_bars, intraday_bars

CALENDAR = trading_calendar("XNYS")
SETTINGS = market_settings({})
#: minutes after the event at which the planted move happens.
PLANT_AFTER = 10 * 60


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@dataclass
class Scenario:
    post: Post
    source: InMemoryBarSource
    baseline_steps: list[float]
    reaction_step: float
    bars: list

    def expected_z(self, steps: list[float] | None = None) -> float:
        steps = self.baseline_steps if steps is None else steps
        return (self.reaction_step - statistics.fmean(steps)) / statistics.stdev(steps)

    def reactions(self, others: OtherPosts | None = None) -> dict[str, Reaction]:
        return {r.window: r for r in post_reactions(self.post, self.source, CALENDAR, SETTINGS, others)}


def scenario(
    posted: datetime,
    reaction_step: float = 0.012,
    *,
    seed: int = 1,
    skip: tuple[int, ...] = (),
    sessions_after: int = 3,
    sigma: float = 0.0,
) -> Scenario:
    """Flat minute bars with the planted steps described in the module's docstring."""
    start = CALENDAR.next_open_s(to_seconds(posted))
    session, offset = CALENDAR.session_of_s(start), CALENDAR.trading_offset_s(start)
    rng = random.Random(seed)
    steps: dict[int, float] = {}
    baseline = []
    for back in range(1, SETTINGS.baseline_days + 1):
        step = rng.gauss(0.0, 0.003)
        baseline.append(step)
        moment = CALENDAR.at_trading_offset_s(session - back, offset)
        steps[moment - moment % 60 + PLANT_AFTER] = step
    steps[start - start % 60 + PLANT_AFTER] = reaction_step
    bars = list(
        intraday_bars(
            CALENDAR, "SPY", CALENDAR.sessions[session - SETTINGS.baseline_days - 3],
            CALENDAR.sessions[session + sessions_after], steps=steps, skip=set(skip), sigma=sigma, seed=seed,
        )
    )  # fmt: skip
    source = InMemoryBarSource(CALENDAR)
    source.add_intraday("SPY", "1m", [(bar.start, bar.close) for bar in bars])
    return Scenario(Post(7, posted, "twitter", ("SPY",)), source, baseline, reaction_step, bars)


def test_planted_moves_are_found_with_the_z_scores_computed_by_hand() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30))  # Tuesday 10:00:30 EDT
    reactions = case.reactions()
    assert list(reactions) == ["1h", "4h", "1d"]
    expected = case.expected_z()
    for window, reaction in reactions.items():
        assert reaction.status == OK, window
        assert reaction.market_open_at_post and not reaction.started_at_next_open
        assert reaction.simple_return == pytest.approx(case.reaction_step, rel=1e-9)
        assert reaction.baseline is not None and len(reaction.baseline.returns) == 60
        assert reaction.baseline.returns == pytest.approx(case.baseline_steps, rel=1e-9)
        assert reaction.abnormal_return == pytest.approx(
            case.reaction_step - statistics.fmean(case.baseline_steps)
        )
        assert reaction.z_score == pytest.approx(expected, rel=1e-9)
        assert reaction.p_value == pytest.approx(normal_two_sided_p(expected))
        assert reaction.significance == "p<0.01"
        assert reaction.complete and reaction.missing_bars == 0
    # The base is the bar ended at 10:00 EDT (the one before the post); each end on the grid.
    assert reactions["1h"].base_at == utc(2025, 6, 10, 14, 0)
    assert reactions["1h"].end_at == utc(2025, 6, 10, 15, 0)
    assert reactions["4h"].end_at == utc(2025, 6, 10, 18, 0)
    assert reactions["1d"].end_at == utc(2025, 6, 11, 14, 0)
    # JSON-serialisable, one record per (symbol, window).
    record = json.loads(json.dumps(reactions["1h"].to_json()))
    assert (
        record["z_score"] == pytest.approx(expected)
        and record["window"] == "1h"
        and record["symbol"] == "SPY"
    )
    assert record["posted_at"] == "2025-06-10T14:00:30+00:00"
    in_new_york = Post(7, datetime.fromisoformat("2025-06-10T10:00:30-04:00"), "twitter", ("SPY",))
    same = post_reactions(in_new_york, case.source, CALENDAR, SETTINGS)[0].to_json()
    assert same == reactions["1h"].to_json()


def test_a_small_planted_move_is_not_significant_and_its_level_follows_the_normal_p_value() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30), reaction_step=0.0)
    reaction = case.reactions()["1h"]
    expected = case.expected_z()
    assert reaction.z_score == pytest.approx(expected, rel=1e-9)
    level = (
        "p<0.01"
        if normal_two_sided_p(expected) < 0.01
        else "p<0.05"
        if normal_two_sided_p(expected) < 0.05
        else "n.s."
    )
    assert reaction.significance == level == "n.s."
    # Empirical p: (1 + baseline returns at least as far from their mean) / 61.
    mean = statistics.fmean(case.baseline_steps)
    as_far = sum(1 for x in case.baseline_steps if abs(x - mean) >= abs(0.0 - mean))
    assert reaction.empirical_p_value == pytest.approx((1 + as_far) / 61)


def test_a_planted_move_stands_out_of_a_noisy_random_walk() -> None:
    planted = scenario(utc(2025, 6, 10, 14, 0, 30), reaction_step=0.03, sigma=0.0005, seed=5)
    calm = scenario(utc(2025, 6, 10, 14, 0, 30), reaction_step=0.0, sigma=0.0005, seed=5)
    for window in ("1h", "4h", "1d"):
        assert planted.reactions()[window].significance == "p<0.01", window
        assert abs(calm.reactions()[window].z_score) < 3, window


@pytest.mark.parametrize(
    ("posted", "window_start", "base_at", "why"),
    [
        (
            utc(2025, 6, 14, 15),
            utc(2025, 6, 16, 13, 30),
            utc(2025, 6, 13, 20),
            "Saturday: Friday's close to Monday",
        ),
        (
            utc(2025, 7, 4, 15),
            utc(2025, 7, 7, 13, 30),
            utc(2025, 7, 3, 17),
            "Independence Day, after a half day",
        ),
        (utc(2025, 4, 18, 15), utc(2025, 4, 21, 13, 30), utc(2025, 4, 17, 20), "Good Friday"),
        (
            utc(2025, 11, 28, 19),
            utc(2025, 12, 1, 14, 30),
            utc(2025, 11, 28, 18),
            "after the half day's 13:00 close",
        ),
        (utc(2025, 3, 9, 15), utc(2025, 3, 10, 13, 30), utc(2025, 3, 7, 21), "the spring DST Sunday"),
        (
            utc(2025, 3, 10, 13, 0),
            utc(2025, 3, 10, 13, 30),
            utc(2025, 3, 7, 21),
            "9:00 EDT on the Monday after",
        ),
        (
            utc(2025, 11, 3, 14, 0),
            utc(2025, 11, 3, 14, 30),
            utc(2025, 10, 31, 20),
            "9:00 EST after the autumn change",
        ),
    ],
)
def test_a_post_while_the_market_is_closed_starts_at_the_next_open(
    posted, window_start, base_at, why
) -> None:
    case = scenario(posted)
    reactions = case.reactions()
    for window, reaction in reactions.items():
        assert reaction.market_open_at_post is False, why
        assert reaction.started_at_next_open is True, why
        assert reaction.window_start == window_start, why
        # The base is the last close before the post: the overnight move is in the window.
        assert reaction.base_at == base_at, why
        assert reaction.status == OK, (why, window)
    # (The 4 h baseline is not the planted steps alone here: a 4 h window from the open of a half day
    # runs into the next session and holds its step too.)
    for window in ("1h", "1d"):
        assert reactions[window].z_score == pytest.approx(case.expected_z(), rel=1e-9), (why, window)
    # +1 trading day from an open ends at the next session's open: that is, at the close of the
    # session the window started in.
    assert reactions["1d"].end_at == to_datetime(
        CALENDAR.closes[CALENDAR.session_of_s(to_seconds(window_start))]
    )


def test_a_post_during_a_half_day_goes_on_at_the_next_open() -> None:
    case = scenario(utc(2025, 11, 28, 17, 30))  # 12:30 EST; the market closes at 13:00
    reactions = case.reactions()
    assert reactions["1h"].market_open_at_post is True and reactions["1h"].window_start == utc(
        2025, 11, 28, 17, 30
    )
    assert reactions["1h"].end_at == utc(2025, 12, 1, 15, 0)  # 30 min on Friday, 30 min on Monday
    # +1 trading day: the same offset (3 h after the open) on Monday.
    assert reactions["1d"].end_at == utc(2025, 12, 1, 17, 30)
    assert all(reaction.status == OK for reaction in reactions.values())


def test_a_post_right_after_the_dst_change_is_open_and_its_baseline_keeps_the_local_time() -> None:
    """10:00 EDT on 2025-03-20: the baseline's sessions before 2025-03-10 are at 10:00 EST (15:00 UTC),
    an hour later in UTC; planted by trading offset, they are found at the same z."""
    case = scenario(utc(2025, 3, 20, 14, 0))
    reactions = case.reactions()
    assert reactions["1h"].market_open_at_post is True
    assert all(reaction.status == OK for reaction in reactions.values())
    # 1 h and 1 d only: the 4 h window from 10:00 on the 2024-12-24 half day runs into Dec 26's step.
    for window in ("1h", "1d"):
        assert reactions[window].z_score == pytest.approx(case.expected_z(), rel=1e-9), window
    four_hours = reactions["4h"].baseline
    assert four_hours is not None
    back = CALENDAR.session_of_s(to_seconds(case.post.published_at)) - CALENDAR.session_index(
        date(2024, 12, 24)
    )
    steps = case.baseline_steps
    expected = [*steps[: back - 1], (1 + steps[back - 1]) * (1 + steps[back - 2]) - 1, *steps[back:]]
    assert four_hours.returns == pytest.approx(expected, rel=1e-9)


def test_a_gap_in_the_window_is_reported_as_incomplete_and_never_filled() -> None:
    posted = utc(2025, 6, 10, 14, 0, 30)
    case = scenario(posted, skip=(to_seconds(utc(2025, 6, 10, 14, 30)),))
    reactions = case.reactions()
    for window, reaction in reactions.items():
        assert reaction.status == INCOMPLETE, window
        assert not reaction.complete and reaction.missing_bars == 1
        assert reaction.z_score is None and reaction.p_value is None and reaction.significance is None
        # The end bars exist: the return is measured, flagged.
        assert reaction.simple_return == pytest.approx(case.reaction_step, rel=1e-9)
    # The base bar itself missing: no return at all (no older price carried forward).
    no_base = scenario(posted, skip=(to_seconds(utc(2025, 6, 10, 13, 59)),))
    reaction = no_base.reactions()["1h"]
    assert (reaction.status, reaction.simple_return, reaction.base_price, reaction.missing_bars) == (
        INCOMPLETE, None, None, 1,
    )  # fmt: skip


def test_a_gap_in_the_baseline_leaves_that_day_out_and_counts_it() -> None:
    posted = utc(2025, 6, 10, 14, 0, 30)
    start = to_seconds(posted)
    day_before = CALENDAR.at_trading_offset_s(
        CALENDAR.session_of_s(start) - 1, CALENDAR.trading_offset_s(start)
    )
    case = scenario(posted, skip=(day_before - day_before % 60 + 20 * 60,))  # inside its 1 h window
    reaction = case.reactions()["1h"]
    assert reaction.baseline is not None
    assert (len(reaction.baseline.returns), reaction.baseline.incomplete) == (59, 1)
    assert reaction.z_score == pytest.approx(case.expected_z(case.baseline_steps[1:]), rel=1e-9)


def test_too_few_complete_baseline_days_give_no_z_score() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30))
    settings = market_settings({"VOLFEFE_BASELINE_DAYS": "60", "VOLFEFE_BASELINE_MIN_DAYS": "60"})
    start = to_seconds(case.post.published_at)
    first = CALENDAR.session_of_s(start) - 1
    gappy = InMemoryBarSource(CALENDAR)
    missing = CALENDAR.opens[first] + 3600
    gappy.add_intraday("SPY", "1m", [(bar.start, bar.close) for bar in case.bars if bar.start != missing])
    reaction = post_reactions(case.post, gappy, CALENDAR, settings)[0]
    assert reaction.status == INSUFFICIENT_BASELINE and reaction.z_score is None
    assert reaction.baseline is not None and len(reaction.baseline.returns) == 59


def test_a_window_past_the_last_stored_bar_awaits_prices() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30), sessions_after=0)  # bars end at the post's day's close
    reactions = case.reactions()
    assert reactions["1h"].status == OK and reactions["4h"].status == OK
    assert reactions["1d"].status == AWAITING_PRICES and reactions["1d"].z_score is None


def test_a_post_after_the_last_stored_bar_awaits_prices_rather_than_having_none() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30))
    later = Post(8, utc(2025, 9, 10, 14, 0), "twitter", ("SPY",))  # months after the last bar
    reactions = post_reactions(later, case.source, CALENDAR, SETTINGS)
    assert [r.status for r in reactions] == [AWAITING_PRICES] * 3
    nothing = post_reactions(
        Post(9, utc(2025, 6, 10, 14), "twitter", ("QQQ",)), case.source, CALENDAR, SETTINGS
    )
    assert [r.status for r in nothing] == ["no_prices"] * 3


def test_daily_bars_alone_give_the_day_window_and_no_intraday_ones() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30))
    daily = InMemoryBarSource(CALENDAR)
    sessions = daily_bars(CALENDAR, case.bars)
    daily.add_daily("SPY", [(to_datetime(bar.start).date(), bar.close) for bar in sessions])
    reactions = {r.window: r for r in post_reactions(case.post, daily, CALENDAR, SETTINGS)}
    assert reactions["1h"].status == NO_INTRADAY_BARS and reactions["1h"].simple_return is None
    day = reactions["1d"]
    assert (day.status, day.resolution) == (OK, "1d")
    # Monday's close to Tuesday's close, by hand from the daily closes; the baseline likewise.
    closes = {to_datetime(bar.start).date(): bar.close for bar in sessions}
    ordered = [closes[d] for d in sorted(closes) if d <= date(2025, 6, 10)]
    returns = [after / before - 1 for before, after in itertools.pairwise(ordered)]
    expected_return, baseline = returns[-1], returns[-61:-1]
    assert day.simple_return == pytest.approx(expected_return, rel=1e-9)
    assert day.z_score == pytest.approx(
        (expected_return - statistics.fmean(baseline)) / statistics.stdev(baseline), rel=1e-9
    )
    assert day.base_at == utc(2025, 6, 9, 20) and day.end_at == utc(2025, 6, 10, 20)


def test_isolation_counts_the_other_posts_between_the_base_and_the_end() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30))
    others = OtherPosts.of(
        [
            (7, utc(2025, 6, 10, 14, 0, 30)),  # the post itself
            (8, utc(2025, 6, 10, 14, 30)),  # in every window
            (9, utc(2025, 6, 10, 16, 0)),  # in 4h and 1d
            (10, utc(2025, 6, 11, 15, 0)),  # after all of them
            (11, utc(2025, 6, 10, 13, 59)),  # before the base
        ]
    )
    reactions = case.reactions(others)
    assert reactions["1h"].other_post_ids == [8] and reactions["1h"].isolation == 0.5
    assert reactions["4h"].other_post_ids == [8, 9] and reactions["4h"].isolation == pytest.approx(1 / 3)
    assert reactions["1d"].to_json()["isolation"] == {
        "score": 1 / 3,
        "other_posts": 2,
        "other_post_ids": [8, 9],
    }
    assert case.reactions()["1h"].isolation == 1.0


def test_the_event_path_is_the_cumulative_abnormal_return_on_the_grid() -> None:
    case = scenario(utc(2025, 6, 10, 14, 0, 30))
    reactions = post_reactions(case.post, case.source, CALENDAR, SETTINGS)
    [path] = event_paths(case.post, case.source, CALENDAR, SETTINGS, reactions)
    assert path.minutes == SETTINGS.event_grid and path.minutes[0] == -60 and path.minutes[-1] == 390
    drift = statistics.fmean(case.baseline_steps) / 390  # the 1d baseline's mean per trading minute
    for minutes, car in zip(path.minutes, path.car, strict=True):
        # Before the post, the price is flat except the previous session's planted step (10 min after
        # 10:00 the day before): not in the last hour. After: the reaction from the 10th minute on.
        expected_move = case.reaction_step if minutes > 10 else 0.0
        assert car == pytest.approx(expected_move - drift * minutes, abs=1e-12), minutes
    assert json.loads(json.dumps(path.to_json()))["car"][0] == pytest.approx(path.car[0])


def test_settings_are_read_from_the_environment() -> None:
    settings = market_settings(
        {
            "VOLFEFE_MARKET_CALENDAR": "XLON",
            "VOLFEFE_REACTION_WINDOWS": "30m, 2h,2d",
            "VOLFEFE_BASELINE_DAYS": "20",
            "VOLFEFE_INTRADAY_RESOLUTION": "5m",
            "VOLFEFE_EVENT_GRID": "-30m..2h/30m",
        }
    )
    assert settings.calendar == "XLON"
    assert [(w.label, w.minutes, w.sessions) for w in settings.windows] == [
        ("30m", 30, 0),
        ("2h", 120, 0),
        ("2d", 0, 2),
    ]
    assert (settings.baseline_days, settings.baseline_min_days, settings.intraday_resolution) == (
        20,
        20,
        "5m",
    )
    assert settings.event_grid == (-30, 0, 30, 60, 90, 120)
    assert parse_event_grid("-1h..1d/15m")[:5] == (-60, -45, -30, -15, 0)
    for bad in (
        {"VOLFEFE_REACTION_WINDOWS": "1w"},
        {"VOLFEFE_BASELINE_DAYS": "ten"},
        {"VOLFEFE_BASELINE_DAYS": "10", "VOLFEFE_BASELINE_MIN_DAYS": "11"},
        {"VOLFEFE_INTRADAY_RESOLUTION": "1d"},
        {"VOLFEFE_EVENT_GRID": "1h..2h/5m"},
    ):
        with pytest.raises(MarketConfigError):
            market_settings(bad)
