"""Bar resolutions, and one symbol's bars as the price series the reaction reads.

A bar is labelled by its start (``ts``) and covers ``[ts, ts + resolution)``; its close is the price
at its end. The price known at a moment ``m`` is therefore the close of the last bar that ended at or
before ``m``. Times are Unix seconds (UTC) inside this module: lookups are bisections over lists.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from market.calendar import TradingCalendar

#: the label of daily bars (one per session; ``ts`` is the session's date at 00:00 UTC).
DAILY = "1d"
#: seconds in each unit of an intraday resolution label.
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_LABEL = re.compile(r"([1-9][0-9]{0,5})([smh])")


def parse_resolution(label: str) -> str:
    """The canonical label of a resolution: ``1d``, or ``<n>s``, ``<n>m``, ``<n>h`` in the largest unit
    that divides it (``60m`` -> ``1h``, ``90s`` stays). Raises ValueError for anything else."""
    text = label.strip().lower()
    if text == DAILY:
        return DAILY
    match = _LABEL.fullmatch(text)
    if match is None:
        raise ValueError(
            f"resolution {label!r} is not 1d or a number of seconds, minutes or hours (1m, 5m, 1h)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    for unit in ("h", "m", "s"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    raise AssertionError(seconds)


def resolution_seconds(label: str) -> int:
    """Seconds per bar of an intraday resolution label (``parse_resolution``'s output)."""
    if label == DAILY:
        raise ValueError("daily bars have no fixed length in seconds: a session's length varies")
    return int(label[:-1]) * _UNIT_SECONDS[label[-1]]


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """One symbol's intraday bars inside trading sessions, in time order.

    ``ends[i]`` is when bar ``i`` ended (Unix seconds; a bar that runs past its session's close ends at
    the close) and ``closes[i]`` its close. Bars outside sessions (extended hours) are not in it.
    """

    ends: Sequence[int]
    closes: Sequence[float]

    def price_at(self, moment: int) -> tuple[int, float] | None:
        """(end, close) of the last bar that ended at or before ``moment``; None before the first."""
        index = bisect_right(self.ends, moment) - 1
        return None if index < 0 else (self.ends[index], self.closes[index])

    def count_ending_in(self, after: int, until: int) -> int:
        """How many bars ended in ``(after, until]``."""
        return bisect_right(self.ends, until) - bisect_right(self.ends, after)

    @property
    def last_end(self) -> int | None:
        return self.ends[-1] if self.ends else None


@dataclass(frozen=True, slots=True)
class DailySeries:
    """One symbol's daily closes by session index (``TradingCalendar.sessions``)."""

    closes: dict[int, float]


class BarSource(Protocol):
    """Where the reaction reads bars: ``market.db_source.DatabaseBarSource``, or ``InMemoryBarSource``."""

    def intraday(self, symbol: str, resolution: str, start: int, end: int) -> PriceSeries:
        """The bars of ``symbol`` that started in ``[start, end)`` (Unix seconds), inside sessions."""
        ...

    def daily(self, symbol: str, first_session: int, last_session: int) -> DailySeries:
        """The daily closes of ``symbol`` for session indexes ``first_session..last_session``."""
        ...

    def last_intraday_end(self, symbol: str, resolution: str) -> int | None:
        """When the last stored intraday bar of ``symbol`` ended (None: it has none)."""
        ...

    def last_daily_session(self, symbol: str) -> int | None:
        """The session index of the last stored daily bar of ``symbol`` (None: it has none)."""
        ...


def session_series(
    calendar: TradingCalendar, starts: Sequence[int], closes: Sequence[float], seconds: int
) -> PriceSeries:
    """The bars (start times in Unix seconds, in order) that start inside a session, each ending at
    ``start + seconds`` or its session's close, whichever is first."""
    ends: list[int] = []
    kept: list[float] = []
    for start, close in zip(starts, closes, strict=True):
        segment_end = calendar.segment_end_s(start)
        if segment_end is not None:
            ends.append(min(start + seconds, segment_end))
            kept.append(close)
    return PriceSeries(ends, kept)


class InMemoryBarSource:
    """Bars held in memory (tests, synthetic data): ``add_intraday`` / ``add_daily``, then read."""

    def __init__(self, calendar: TradingCalendar) -> None:
        self.calendar = calendar
        self._intraday: dict[tuple[str, str], PriceSeries] = {}
        self._daily: dict[str, dict[int, float]] = {}

    def add_intraday(self, symbol: str, resolution: str, bars: Sequence[tuple[int, float]]) -> None:
        """``bars``: (start in Unix seconds, close), in time order."""
        self._intraday[(symbol, resolution)] = session_series(
            self.calendar,
            [start for start, _ in bars],
            [close for _, close in bars],
            resolution_seconds(resolution),
        )

    def add_daily(self, symbol: str, bars: Sequence[tuple[date, float]]) -> None:
        """``bars``: (session date, close); a date the exchange does not trade is ignored."""
        closes = self._daily.setdefault(symbol, {})
        for day, close in bars:
            index = self.calendar.session_index(day)
            if index is not None:
                closes[index] = close

    def intraday(self, symbol: str, resolution: str, start: int, end: int) -> PriceSeries:
        return self._intraday.get((symbol, resolution), PriceSeries([], []))

    def daily(self, symbol: str, first_session: int, last_session: int) -> DailySeries:
        closes = self._daily.get(symbol, {})
        return DailySeries(
            {index: closes[index] for index in range(first_session, last_session + 1) if index in closes}
        )

    def last_intraday_end(self, symbol: str, resolution: str) -> int | None:
        series = self._intraday.get((symbol, resolution))
        return None if series is None else series.last_end

    def last_daily_session(self, symbol: str) -> int | None:
        closes = self._daily.get(symbol)
        return max(closes) if closes else None
