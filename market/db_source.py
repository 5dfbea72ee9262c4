"""The bar source that reads ``price_bars``: a month of a symbol's bars per query, kept while it is used.

A reaction reads about three months of minute bars per (post, symbol) for its baseline; posts taken
in time order share most of them, so bars are loaded a UTC month at a time and the last
``CACHED_MONTHS`` months loaded are kept (least recently used out first). One source is meant for
one job: it does not see bars imported after it loaded a month.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import PriceBar
from market.bars import DAILY, DailySeries, PriceSeries, resolution_seconds, session_series
from market.calendar import TradingCalendar, to_datetime

#: months of one symbol's bars kept in memory (about 8,000 minute bars each for a US equity).
CACHED_MONTHS = 24


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes (stored in UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _month(seconds: int) -> int:
    moment = to_datetime(seconds)
    return moment.year * 12 + moment.month - 1


def _month_start(month: int) -> datetime:
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


class DatabaseBarSource:
    """``market.bars.BarSource`` over ``price_bars`` in ``session``'s database."""

    def __init__(
        self, session: Session, calendar: TradingCalendar, cached_months: int = CACHED_MONTHS
    ) -> None:
        self.session = session
        self.calendar = calendar
        self.cached_months = cached_months
        self._months: OrderedDict[tuple[str, str, int], PriceSeries] = OrderedDict()
        self._joined: tuple[tuple[str, str, int, int], PriceSeries] | None = None
        self._last_intraday: dict[tuple[str, str], int | None] = {}
        self._last_daily: dict[str, int | None] = {}

    def intraday(self, symbol: str, resolution: str, start: int, end: int) -> PriceSeries:
        first, last = _month(start), _month(max(start, end - 1))
        key = (symbol, resolution, first, last)
        if self._joined is not None and self._joined[0] == key:
            return self._joined[1]
        ends: list[int] = []
        closes: list[float] = []
        for month in range(first, last + 1):
            series = self._month_series(symbol, resolution, month)
            ends.extend(series.ends)
            closes.extend(series.closes)
        joined = PriceSeries(ends, closes)
        self._joined = (key, joined)
        return joined

    def _month_series(self, symbol: str, resolution: str, month: int) -> PriceSeries:
        key = (symbol, resolution, month)
        series = self._months.get(key)
        if series is not None:
            self._months.move_to_end(key)
            return series
        rows = self.session.execute(
            select(PriceBar.ts, PriceBar.close)
            .where(
                PriceBar.symbol == symbol,
                PriceBar.resolution == resolution,
                PriceBar.ts >= _month_start(month),
                PriceBar.ts < _month_start(month + 1),
            )
            .order_by(PriceBar.ts)
        ).all()
        series = session_series(
            self.calendar,
            [int(_utc(ts).timestamp()) for ts, _ in rows],
            [close for _, close in rows],
            resolution_seconds(resolution),
        )
        self._months[key] = series
        if len(self._months) > self.cached_months:
            self._months.popitem(last=False)
        return series

    def daily(self, symbol: str, first_session: int, last_session: int) -> DailySeries:
        sessions = self.calendar.sessions
        first_day, last_day = sessions[max(0, first_session)], sessions[min(last_session, len(sessions) - 1)]
        rows = self.session.execute(
            select(PriceBar.ts, PriceBar.close).where(
                PriceBar.symbol == symbol,
                PriceBar.resolution == DAILY,
                PriceBar.ts >= datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC),
                PriceBar.ts <= datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC),
            )
        ).all()
        closes = {}
        for ts, close in rows:
            index = self.calendar.session_index(_utc(ts).date())
            if index is not None:  # a bar on a day the exchange did not trade is not a session's
                closes[index] = close
        return DailySeries(closes)

    def last_intraday_end(self, symbol: str, resolution: str) -> int | None:
        key = (symbol, resolution)
        if key not in self._last_intraday:
            last = self.session.execute(
                select(func.max(PriceBar.ts)).where(
                    PriceBar.symbol == symbol, PriceBar.resolution == resolution
                )
            ).scalar_one()
            if last is None:
                self._last_intraday[key] = None
            else:
                start = int(_utc(last).timestamp())
                segment_end = self.calendar.segment_end_s(start)
                end = start + resolution_seconds(resolution)
                self._last_intraday[key] = end if segment_end is None else min(end, segment_end)
        return self._last_intraday[key]

    def last_daily_session(self, symbol: str) -> int | None:
        if symbol not in self._last_daily:
            last = self.session.execute(
                select(func.max(PriceBar.ts)).where(PriceBar.symbol == symbol, PriceBar.resolution == DAILY)
            ).scalar_one()
            if last is None:
                self._last_daily[symbol] = None
            else:
                self._last_daily[symbol] = bisect_right(self.calendar.sessions, _utc(last).date()) - 1
        return self._last_daily[symbol]
