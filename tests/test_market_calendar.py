"""market.calendar: the exchange's sessions from exchange_calendars (DST, holidays, half days), and
the trading-time arithmetic the reaction uses, checked against the library and against dates known
by hand."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import exchange_calendars
import pandas as pd
import pytest

from market.calendar import CalendarError, to_datetime, to_seconds, trading_calendar


@pytest.fixture(scope="module")
def xnys():
    return trading_calendar("XNYS")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_open_and_next_open_match_the_library_on_random_minutes(xnys) -> None:
    library = exchange_calendars.get_calendar("XNYS", start="2000-01-03")
    rng = random.Random(17)
    for _ in range(2000):
        moment = utc(2001, 1, 1) + timedelta(minutes=rng.randrange(0, 25 * 365 * 24 * 60))
        stamp = pd.Timestamp(moment)
        assert xnys.is_open(moment) == library.is_open_on_minute(stamp), moment
        if not library.is_open_on_minute(stamp):
            assert xnys.next_open(moment) == library.next_open(stamp).to_pydatetime(), moment
        else:
            assert xnys.next_open(moment) == moment


@pytest.mark.parametrize(
    ("moment", "is_open", "next_open", "why"),
    [
        (utc(2025, 7, 5, 15), False, utc(2025, 7, 7, 13, 30), "Saturday"),
        (utc(2025, 7, 4, 15), False, utc(2025, 7, 7, 13, 30), "Independence Day"),
        (utc(2025, 7, 3, 16, 30), True, utc(2025, 7, 3, 16, 30), "the half day before it, 12:30 EDT"),
        (utc(2025, 7, 3, 17, 30), False, utc(2025, 7, 7, 13, 30), "after its 13:00 EDT close"),
        (utc(2025, 4, 18, 15), False, utc(2025, 4, 21, 13, 30), "Good Friday"),
        (utc(2025, 11, 28, 17, 59), True, utc(2025, 11, 28, 17, 59), "the day after Thanksgiving, 12:59 EST"),
        (utc(2025, 11, 28, 18, 0), False, utc(2025, 12, 1, 14, 30), "its 13:00 EST close"),
        (utc(2025, 3, 9, 15), False, utc(2025, 3, 10, 13, 30), "Sunday of the spring DST change"),
        (
            utc(2025, 3, 10, 13, 45),
            True,
            utc(2025, 3, 10, 13, 45),
            "9:45 EDT (a UTC-5 shift says 8:45: closed)",
        ),
        (utc(2025, 3, 7, 13, 45), False, utc(2025, 3, 7, 14, 30), "8:45 EST the Friday before"),
        (utc(2025, 11, 3, 14, 0), False, utc(2025, 11, 3, 14, 30), "9:00 EST after the autumn change"),
        (utc(2025, 10, 31, 14, 0), True, utc(2025, 10, 31, 14, 0), "10:00 EDT before it"),
        (utc(2025, 6, 10, 20, 0), False, utc(2025, 6, 11, 13, 30), "the close itself is closed"),
        (utc(2025, 6, 10, 13, 30), True, utc(2025, 6, 10, 13, 30), "the open itself is open"),
    ],
)
def test_closed_market_and_next_open(xnys, moment, is_open, next_open, why) -> None:
    assert xnys.is_open(moment) is is_open, why
    assert xnys.next_open(moment) == next_open, why


def test_trading_day_arithmetic(xnys) -> None:
    # Back from Monday 2025-07-07: Thursday 3 (half day), Wednesday 2; the 4th was a holiday.
    assert xnys.sessions_before(date(2025, 7, 7), 3) == [date(2025, 7, 1), date(2025, 7, 2), date(2025, 7, 3)]
    assert xnys.sessions_before(date(2025, 7, 5), 1) == [date(2025, 7, 3)]  # a Saturday: the sessions before
    assert xnys.add_trading_days(date(2025, 4, 17), 1) == date(2025, 4, 21)  # over Good Friday and a weekend
    assert xnys.add_trading_days(date(2025, 4, 21), -1) == date(2025, 4, 17)
    assert xnys.add_trading_days(date(2025, 1, 2), 20) == date(
        2025, 2, 3
    )  # Jan 9 (Carter) and 20 (MLK) closed
    assert xnys.session_of(utc(2025, 7, 4, 15)) == date(2025, 7, 7)
    assert xnys.open_close(date(2025, 11, 28)) == (utc(2025, 11, 28, 14, 30), utc(2025, 11, 28, 18, 0))
    with pytest.raises(CalendarError):
        xnys.add_trading_days(date(2025, 7, 4), 1)


def test_trading_time_runs_over_closes_half_days_and_dst(xnys) -> None:
    # 12:30 EST on the half day + 1 h of trading: 30 min to the 13:00 close, 30 min from Monday's open.
    assert xnys.add_trading_time(utc(2025, 11, 28, 17, 30), 3600) == utc(2025, 12, 1, 15, 0)
    # From a closed market, counting starts at the next open (Monday after the DST change: 9:30 EDT).
    assert xnys.add_trading_time(utc(2025, 3, 8, 12), 3600) == utc(2025, 3, 10, 14, 30)
    # Landing exactly on a close gives the close, not the next open.
    assert xnys.add_trading_time(utc(2025, 6, 10, 19), 3600) == utc(2025, 6, 10, 20)
    # Backwards.
    assert xnys.add_trading_time(utc(2025, 12, 1, 15, 0), -3600) == utc(2025, 11, 28, 17, 30)
    assert xnys.add_trading_time(utc(2025, 6, 10, 14, 30), -3600) == utc(2025, 6, 10, 13, 30)  # to the open
    assert xnys.add_trading_time(utc(2025, 6, 10, 14, 0), -3600) == utc(2025, 6, 9, 19, 30)  # and past it
    # The same trading offset on either side of the DST change is the same local time.
    march_7, march_10 = (xnys.session_index(day) for day in (date(2025, 3, 7), date(2025, 3, 10)))
    assert to_datetime(xnys.at_trading_offset_s(march_7, 1800)) == utc(2025, 3, 7, 15, 0)  # 10:00 EST
    assert to_datetime(xnys.at_trading_offset_s(march_10, 1800)) == utc(2025, 3, 10, 14, 0)  # 10:00 EDT
    assert xnys.trading_offset_s(to_seconds(utc(2025, 3, 10, 14, 0))) == 1800
    # An offset past a half day's close is that close.
    half_day = xnys.session_index(date(2025, 11, 28))
    assert to_datetime(xnys.at_trading_offset_s(half_day, 5 * 3600)) == utc(2025, 11, 28, 18, 0)


def test_the_bar_grid_of_a_complete_feed(xnys) -> None:
    minute = 60
    # The last minute bar ended at or before 10:00:30 EDT ended at 10:00; before an open: the last close.
    assert to_datetime(xnys.bar_end_at_or_before_s(to_seconds(utc(2025, 6, 10, 14, 0, 30)), minute)) == utc(
        2025, 6, 10, 14
    )
    assert to_datetime(xnys.bar_end_at_or_before_s(to_seconds(utc(2025, 6, 10, 13, 30)), minute)) == utc(
        2025, 6, 9, 20
    )
    assert to_datetime(xnys.bar_end_at_or_before_s(to_seconds(utc(2025, 6, 8, 12)), minute)) == utc(
        2025, 6, 6, 20
    )
    # A full session has 390 minute bars, the half day 210, a weekend none.
    day = (to_seconds(utc(2025, 6, 10, 13, 30)), to_seconds(utc(2025, 6, 10, 20)))
    assert xnys.bar_ends_between_s(*day, minute) == 390
    assert (
        xnys.bar_ends_between_s(to_seconds(utc(2025, 11, 28)), to_seconds(utc(2025, 11, 29)), minute) == 210
    )
    assert xnys.bar_ends_between_s(to_seconds(utc(2025, 6, 7)), to_seconds(utc(2025, 6, 9)), minute) == 0
    # 1 h bars from 9:30: six whole ones and a last one cut at the close.
    assert xnys.bar_ends_between_s(*day, 3600) == 7
    assert (
        xnys.trading_seconds_between_s(to_seconds(utc(2025, 11, 26)), to_seconds(utc(2025, 12, 2)))
        == (390 + 210 + 390) * 60
    )


def test_unknown_calendar_and_naive_times_are_refused() -> None:
    with pytest.raises(CalendarError, match="unknown exchange calendar 'NOPE'"):
        trading_calendar("NOPE")
    with pytest.raises(ValueError, match="no time zone"):
        trading_calendar().is_open(datetime(2025, 6, 10, 15))


def test_a_calendar_with_a_lunch_break() -> None:
    """Hong Kong closes for lunch: the break is closed, and trading time skips it."""
    xhkg = trading_calendar("XHKG")
    index = xhkg.session_index(date(2025, 6, 10))
    assert index is not None
    opening = xhkg.opens[index]  # 09:30 HKT = 01:30 UTC; lunch 12:00-13:00 HKT
    assert xhkg.is_open(utc(2025, 6, 10, 3, 59)) and not xhkg.is_open(utc(2025, 6, 10, 4, 30))
    assert xhkg.next_open(utc(2025, 6, 10, 4, 30)) == utc(2025, 6, 10, 5, 0)
    assert to_datetime(xhkg.add_trading_seconds_s(opening, 3 * 3600)) == utc(2025, 6, 10, 5, 30)
