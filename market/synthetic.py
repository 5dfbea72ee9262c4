"""Seeded synthetic bars on an exchange's real sessions, with planted moves: for tests and benchmarks.

The price is a random walk (``sigma`` per bar, log scale; 0 gives a flat line) in which a planted step
multiplies the close of the bar that starts at a given moment by ``1 + step``. Bars exist only inside
sessions (DST, holidays and half days from the calendar); ``skip`` leaves chosen bars out (a gap).
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from market.calendar import TradingCalendar, to_datetime

#: the first price of a synthetic series.
DEFAULT_START_PRICE = 100.0


@dataclass(frozen=True, slots=True)
class SyntheticBar:
    symbol: str
    #: the bar's start, Unix seconds (a daily bar: its session's date at 00:00 UTC).
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: int


def intraday_bars(
    calendar: TradingCalendar,
    symbol: str,
    first: date,
    last: date,
    *,
    seconds: int = 60,
    seed: int = 0,
    sigma: float = 0.0,
    start_price: float = DEFAULT_START_PRICE,
    steps: Mapping[int, float] | None = None,
    skip: Collection[int] = (),
) -> Iterator[SyntheticBar]:
    """Bars of ``seconds`` from the open of session ``first`` to the close of session ``last``."""
    rng = random.Random(seed)
    steps = steps or {}
    price = start_price
    first_index = calendar.session_index(first)
    last_index = calendar.session_index(last)
    if first_index is None or last_index is None:
        raise ValueError(f"{first} and {last} must be {calendar.name} sessions")
    for session in range(first_index, last_index + 1):
        opening, closing = calendar.opens[session], calendar.closes[session]
        for start in range(opening, closing, seconds):
            if not calendar.is_open_s(start):  # a break
                continue
            before = price
            price *= math.exp(sigma * rng.gauss(0.0, 1.0)) if sigma else 1.0
            price *= 1.0 + steps.get(start, 0.0)
            if start in skip:
                continue
            spread = abs(rng.gauss(0.0, sigma)) if sigma else 0.0
            yield SyntheticBar(
                symbol,
                start,
                before,
                max(before, price) * (1 + spread),
                min(before, price) * (1 - spread),
                price,
                rng.randrange(1_000, 100_000),
            )


def daily_bars(
    calendar: TradingCalendar, bars: Iterator[SyntheticBar] | list[SyntheticBar]
) -> list[SyntheticBar]:
    """Intraday bars aggregated per session, each labelled with its session's date at 00:00 UTC."""
    sessions: dict[int, list[SyntheticBar]] = {}
    for bar in bars:
        sessions.setdefault(calendar.session_of_s(bar.start), []).append(bar)
    daily = []
    for session, day_bars in sorted(sessions.items()):
        day = calendar.sessions[session]
        midnight = int(to_datetime(0).replace(year=day.year, month=day.month, day=day.day).timestamp())
        daily.append(
            SyntheticBar(
                day_bars[0].symbol,
                midnight,
                day_bars[0].open,
                max(bar.high for bar in day_bars),
                min(bar.low for bar in day_bars),
                day_bars[-1].close,
                sum(bar.volume for bar in day_bars),
            )
        )
    return daily


def _row(bar: SyntheticBar, daily: bool) -> dict[str, object]:
    moment = to_datetime(bar.start)
    return {
        "symbol": bar.symbol,
        "timestamp": moment.date().isoformat() if daily else moment.isoformat().replace("+00:00", "Z"),
        "open": repr(bar.open),
        "high": repr(bar.high),
        "low": repr(bar.low),
        "close": repr(bar.close),
        "volume": bar.volume,
    }


def write_bars(path: Path, bars: Iterator[SyntheticBar] | list[SyntheticBar], *, daily: bool = False) -> int:
    """Write ``bars`` as ``volfefe import-prices`` reads them (CSV, or JSON Lines for ``.jsonl``); returns
    how many. Timestamps are ISO 8601 in UTC (``Z``); a daily bar's is its session's date."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        if path.suffix == ".jsonl":
            for bar in bars:
                row = _row(bar, daily)
                handle.write(
                    json.dumps({**row, **{k: float(row[k]) for k in ("open", "high", "low", "close")}}) + "\n"
                )  # type: ignore[arg-type]
                count += 1
            return count
        writer = csv.DictWriter(handle, ["symbol", "timestamp", "open", "high", "low", "close", "volume"])
        writer.writeheader()
        for bar in bars:
            writer.writerow(_row(bar, daily))
            count += 1
    return count
