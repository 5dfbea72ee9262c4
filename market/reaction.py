"""What the market did after a post: one record per (symbol, window), and the event-study path.

For a post published at ``t``:

- **Event time.** ``t`` when the market is open then; otherwise the next open (``started_at_next_open``).
- **Base.** The price known at the event: the close of the last bar that ended at or before it. For a
  post while the market is closed, that is the last session's closing bar, so the window's return holds
  the overnight (or weekend) move that the post may have caused.
- **Windows.** ``<n>m``/``<n>h``: that much trading time after the event (a window that reaches a close
  goes on at the next open). ``<n>d``: the same trading offset from the open, ``n`` sessions later (at
  most that session's close: half days). The end price is the close of the last bar ended by then.
- **Baseline.** The same window, started at the same trading offset from the open, in each of the
  ``baseline_days`` sessions before the event's session (no sample ends after the event): the asset's
  own returns of the same length and time of day, overnight gaps included when the post's window has
  one. Abnormal return = return - their mean; z = abnormal / their standard deviation (n - 1).
- **Significance.** A two-sided p-value from the normal distribution, ``erfc(|z| / sqrt 2)``, with the
  levels ``p<0.01`` and ``p<0.05``. Not the baseline's empirical distribution: 60 returns cannot show a
  p below 1/61 = 0.016, so could never give ``p<0.01``. Returns have fatter tails than the normal, so
  the normal overstates significance somewhat; the empirical p-value ((1 + baseline returns at least as
  far from the mean) / (n + 1)) is recorded beside it as the check.
- **Gaps.** A complete feed has a bar ending at each step of the resolution from every open to the
  close. The window is complete when its base bar, its end bar and every bar between exist. A window
  whose base or end bar is missing gets no return (nothing is carried forward); one missing bars
  inside gets its return but, like any incomplete window, no z-score (status ``incomplete``, with the
  count of missing bars). A baseline return with any missing bar is left out and counted
  (``baseline.incomplete``); fewer than ``baseline_min_days`` complete ones: no z-score.
- **Daily bars.** When the symbol has no intraday bars around the post, ``<n>d`` windows read daily
  closes: from the close of the last session that closed at or before the post to the close ``n``
  sessions later; the baseline is the ``baseline_days`` ``n``-session returns before it. ``<n>m``/``<n>h``
  windows on daily-only data have no return (status ``no_intraday_bars``).
- **Isolation.** ``1 / (1 + k)``, where ``k`` counts the caller's other posts (by default: the same
  source's) published after the base price and up to the end price: each is a rival explanation of the
  move. 1 means no other post in the window; 0.5 one other; 0.25 three.
- **Not yet priced.** A window that ends after the symbol's last stored bar is ``awaiting_prices``:
  computed again when prices arrive.

Everything is a pure function of the post, the bar source, the calendar and the settings.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from market.bars import DAILY, BarSource, DailySeries, PriceSeries, resolution_seconds
from market.calendar import CalendarError, TradingCalendar, to_datetime, to_seconds
from market.settings import SESSION_MINUTES, MarketSettings, Window

#: p-value thresholds of the significance levels, strictest first.
SIGNIFICANCE_LEVELS = (0.01, 0.05)
#: the level of a z-score whose p-value passes none of the thresholds.
NOT_SIGNIFICANT = "n.s."
#: other posts' ids listed in a record at most (the count is always whole).
MAX_LISTED_OTHER_POSTS = 20

#: statuses of a record; only ``ok`` has a z-score.
OK = "ok"
INCOMPLETE = "incomplete"
AWAITING_PRICES = "awaiting_prices"
NO_PRICES = "no_prices"
NO_INTRADAY_BARS = "no_intraday_bars"
INSUFFICIENT_BASELINE = "insufficient_baseline"
OUTSIDE_CALENDAR = "outside_calendar"


@dataclass(frozen=True)
class Post:
    """What the reaction needs of a post: its id, when it was published (aware), its source and the
    symbols linked to it."""

    content_id: int
    published_at: datetime
    source: str
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class OtherPosts:
    """Other posts that may contaminate a window: ids and publication times (Unix seconds), in time order."""

    ids: Sequence[int] = ()
    times: Sequence[int] = ()

    @classmethod
    def of(cls, posts: Sequence[tuple[int, datetime]]) -> OtherPosts:
        ordered = sorted((to_seconds(moment), content_id) for content_id, moment in posts)
        return cls([content_id for _, content_id in ordered], [moment for moment, _ in ordered])

    def within(self, after: int, until: int, excluding: int) -> list[int]:
        """Ids of the posts published in ``(after, until]``, ``excluding`` the post itself."""
        first, last = bisect_right(self.times, after), bisect_right(self.times, until)
        return [content_id for content_id in self.ids[first:last] if content_id != excluding]


@dataclass
class Baseline:
    sessions: int
    returns: list[float] = field(default_factory=list)
    incomplete: int = 0

    @property
    def mean(self) -> float | None:
        return math.fsum(self.returns) / len(self.returns) if self.returns else None

    @property
    def stdev(self) -> float | None:
        return statistics.stdev(self.returns) if len(self.returns) >= 2 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "returns": len(self.returns),
            "incomplete": self.incomplete,
            "mean": self.mean,
            "stdev": self.stdev,
        }


@dataclass
class Reaction:
    """One (post, symbol, window): see the module's docstring for every field's meaning."""

    content_id: int
    symbol: str
    window: str
    calendar: str
    resolution: str | None
    posted_at: datetime
    market_open_at_post: bool | None
    window_start: datetime | None
    started_at_next_open: bool | None
    status: str
    base_at: datetime | None = None
    end_at: datetime | None = None
    base_price: float | None = None
    end_price: float | None = None
    simple_return: float | None = None
    abnormal_return: float | None = None
    z_score: float | None = None
    p_value: float | None = None
    empirical_p_value: float | None = None
    significance: str | None = None
    complete: bool = False
    missing_bars: int = 0
    baseline: Baseline | None = None
    other_post_ids: list[int] = field(default_factory=list)

    @property
    def isolation(self) -> float:
        return 1.0 / (1 + len(self.other_post_ids))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO 8601 in UTC)."""

        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(UTC).isoformat()

        return {
            "content_id": self.content_id,
            "symbol": self.symbol,
            "window": self.window,
            "status": self.status,
            "calendar": self.calendar,
            "resolution": self.resolution,
            "posted_at": iso(self.posted_at),
            "market_open_at_post": self.market_open_at_post,
            "window_start": iso(self.window_start),
            "started_at_next_open": self.started_at_next_open,
            "base_at": iso(self.base_at),
            "end_at": iso(self.end_at),
            "base_price": self.base_price,
            "end_price": self.end_price,
            "return": self.simple_return,
            "abnormal_return": self.abnormal_return,
            "z_score": self.z_score,
            "p_value": self.p_value,
            "empirical_p_value": self.empirical_p_value,
            "significance": self.significance,
            "complete": self.complete,
            "missing_bars": self.missing_bars,
            "baseline": None if self.baseline is None else self.baseline.to_json(),
            "isolation": {
                "score": self.isolation,
                "other_posts": len(self.other_post_ids),
                "other_post_ids": self.other_post_ids[:MAX_LISTED_OTHER_POSTS],
            },
        }


@dataclass(frozen=True)
class EventPath:
    """A (post, symbol)'s cumulative abnormal return at each point of the event-study grid.

    ``car[i]`` is the price ``minutes[i]`` trading minutes from the event over the base price, less 1,
    less the baseline's mean drift over that time; None where the bar there is missing.
    """

    content_id: int
    symbol: str
    minutes: tuple[int, ...]
    car: list[float | None]

    def to_json(self) -> dict[str, Any]:
        return {
            "content_id": self.content_id,
            "symbol": self.symbol,
            "minutes": list(self.minutes),
            "car": self.car,
        }


def significance_level(p_value: float) -> str:
    for threshold in SIGNIFICANCE_LEVELS:
        if p_value < threshold:
            return f"p<{threshold:g}"
    return NOT_SIGNIFICANT


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2))


# -- one return between two moments ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Move:
    base_end: int
    end_end: int
    base_price: float | None
    end_price: float | None
    missing: int

    @property
    def value(self) -> float | None:
        if self.base_price is None or self.end_price is None:
            return None
        return self.end_price / self.base_price - 1.0


def _intraday_move(
    calendar: TradingCalendar, series: PriceSeries, seconds: int, start: int, end: int
) -> _Move | None:
    """The move from the price known at ``start`` to the price known at ``end``; None when the calendar
    has no bar before ``start``."""
    base_end = calendar.bar_end_at_or_before_s(start, seconds)
    end_end = calendar.bar_end_at_or_before_s(end, seconds)
    if base_end is None or end_end is None:
        return None
    base = series.price_at(base_end)
    final = series.price_at(end_end)
    base_price = base[1] if base is not None and base[0] == base_end else None
    end_price = final[1] if final is not None and final[0] == end_end else None
    missing = calendar.bar_ends_between_s(base_end, end_end, seconds) - series.count_ending_in(
        base_end, end_end
    )
    return _Move(base_end, end_end, base_price, end_price, missing + (base_price is None))


def _daily_move(calendar: TradingCalendar, daily: DailySeries, first: int, last: int) -> _Move:
    missing = sum(1 for index in range(first, last + 1) if index not in daily.closes)
    return _Move(
        calendar.closes[first],
        calendar.closes[last],
        daily.closes.get(first),
        daily.closes.get(last),
        missing,
    )


# -- one post ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    posted: int
    start: int
    session: int
    offset: int
    open_at_post: bool


def _event(calendar: TradingCalendar, post: Post) -> _Event:
    posted = to_seconds(post.published_at)
    start = calendar.next_open_s(posted)
    return _Event(
        posted,
        start,
        calendar.session_of_s(start),
        calendar.trading_offset_s(start),
        calendar.is_open_s(posted),
    )


def _span_sessions(settings: MarketSettings) -> int:
    """Sessions a window may reach past its start: its own, plus one for a window of minutes."""
    return max(max(w.sessions for w in settings.windows), 1) + 1


def post_reactions(
    post: Post,
    bars: BarSource,
    calendar: TradingCalendar,
    settings: MarketSettings,
    others: OtherPosts | None = None,
) -> list[Reaction]:
    """One Reaction per (symbol of ``post``, window of ``settings``), in that order."""
    others = others or OtherPosts()
    try:
        event = _event(calendar, post)
    except CalendarError:
        return [
            Reaction(post.content_id, symbol, window.label, calendar.name, None, post.published_at, None, None, None,
                     OUTSIDE_CALENDAR)
            for symbol in post.symbols
            for window in settings.windows
        ]  # fmt: skip
    reactions = []
    for symbol in post.symbols:
        series = _intraday_series(post, symbol, bars, calendar, settings, event)
        daily: DailySeries | None = None
        for window in settings.windows:
            reaction = Reaction(
                post.content_id, symbol, window.label, calendar.name, None, post.published_at,
                event.open_at_post, to_datetime(event.start), not event.open_at_post, NO_PRICES,
            )  # fmt: skip
            if series.ends:
                _measure_intraday(reaction, window, series, bars, calendar, settings, event)
            elif window.sessions and bars.last_daily_session(symbol) is not None:
                if daily is None:
                    daily = _daily_series(symbol, bars, calendar, settings, event)
                _measure_daily(reaction, window, daily, bars, calendar, settings, event)
            elif _intraday_ended_before(bars, symbol, settings, event):
                reaction.status = AWAITING_PRICES
            elif bars.last_daily_session(symbol) is not None:
                reaction.status = NO_INTRADAY_BARS
            if reaction.base_at is not None and reaction.end_at is not None:
                reaction.other_post_ids = others.within(
                    to_seconds(reaction.base_at), to_seconds(reaction.end_at), post.content_id
                )
            reactions.append(reaction)
    return reactions


def _intraday_ended_before(bars: BarSource, symbol: str, settings: MarketSettings, event: _Event) -> bool:
    """Whether the symbol's intraday bars stop before the post: its prices have not arrived yet."""
    last = bars.last_intraday_end(symbol, settings.intraday_resolution)
    return last is not None and last <= event.start


def _intraday_series(
    post: Post,
    symbol: str,
    bars: BarSource,
    calendar: TradingCalendar,
    settings: MarketSettings,
    event: _Event,
) -> PriceSeries:
    reach = _span_sessions(settings)
    first = max(0, event.session - settings.baseline_days - reach)
    last = min(len(calendar.sessions) - 1, event.session + reach)
    return bars.intraday(
        symbol, settings.intraday_resolution, calendar.opens[first], calendar.closes[last] + 1
    )


def _daily_series(
    symbol: str, bars: BarSource, calendar: TradingCalendar, settings: MarketSettings, event: _Event
) -> DailySeries:
    base = calendar.last_close_at_or_before_s(event.posted)
    base = 0 if base is None else base
    reach = max(w.sessions for w in settings.windows)
    return bars.daily(symbol, max(0, base - settings.baseline_days - reach), base + reach)


def _window_end(
    calendar: TradingCalendar, window: Window, start: int, session: int, offset: int
) -> int | None:
    """When ``window`` started at ``start`` (``offset`` into ``session``) ends; None past the calendar."""
    try:
        if window.sessions:
            return calendar.at_trading_offset_s(session + window.sessions, offset)
        return calendar.add_trading_seconds_s(start, window.trading_seconds)
    except CalendarError:
        return None


def _measure_intraday(
    reaction: Reaction,
    window: Window,
    series: PriceSeries,
    bars: BarSource,
    calendar: TradingCalendar,
    settings: MarketSettings,
    event: _Event,
) -> None:
    seconds = resolution_seconds(settings.intraday_resolution)
    reaction.resolution = settings.intraday_resolution
    end = _window_end(calendar, window, event.start, event.session, event.offset)
    move = None if end is None else _intraday_move(calendar, series, seconds, event.start, end)
    if move is None:
        reaction.status = OUTSIDE_CALENDAR
        return
    baseline = Baseline(settings.baseline_days)
    first = window.sessions or 1
    for back in range(first, first + settings.baseline_days):
        session = event.session - back
        if session < 0:
            break
        start = calendar.at_trading_offset_s(session, event.offset)
        sample_end = _window_end(calendar, window, start, session, event.offset)
        if sample_end is None or sample_end > event.start:
            continue
        sample = _intraday_move(calendar, series, seconds, start, sample_end)
        if sample is None or sample.missing or sample.value is None:
            baseline.incomplete += 1
        else:
            baseline.returns.append(sample.value)
    last_end = bars.last_intraday_end(reaction.symbol, settings.intraday_resolution)
    _record(reaction, move, baseline, settings, awaiting=last_end is None or last_end < move.end_end)


def _measure_daily(
    reaction: Reaction,
    window: Window,
    daily: DailySeries,
    bars: BarSource,
    calendar: TradingCalendar,
    settings: MarketSettings,
    event: _Event,
) -> None:
    last_stored = bars.last_daily_session(reaction.symbol)
    if last_stored is None:
        return
    reaction.resolution = DAILY
    base = calendar.last_close_at_or_before_s(event.posted)
    if base is None or base + window.sessions >= len(calendar.sessions):
        reaction.status = OUTSIDE_CALENDAR
        return
    move = _daily_move(calendar, daily, base, base + window.sessions)
    baseline = Baseline(settings.baseline_days)
    for back in range(window.sessions, window.sessions + settings.baseline_days):
        first = base - back
        if first < 0:
            break
        sample = _daily_move(calendar, daily, first, first + window.sessions)
        if sample.missing:
            baseline.incomplete += 1
        else:
            baseline.returns.append(sample.value)  # type: ignore[arg-type]  # complete: both prices
    _record(reaction, move, baseline, settings, awaiting=last_stored < base + window.sessions)


def _record(
    reaction: Reaction, move: _Move, baseline: Baseline, settings: MarketSettings, awaiting: bool
) -> None:
    reaction.base_at, reaction.end_at = to_datetime(move.base_end), to_datetime(move.end_end)
    reaction.base_price, reaction.end_price = move.base_price, move.end_price
    reaction.simple_return = move.value
    reaction.missing_bars = move.missing
    reaction.complete = move.missing == 0
    reaction.baseline = baseline
    if awaiting:
        reaction.status = AWAITING_PRICES
        reaction.missing_bars = 0
        reaction.complete = False
        return
    if not reaction.complete:
        reaction.status = INCOMPLETE
        return
    mean, stdev = baseline.mean, baseline.stdev
    if mean is None or move.value is None:
        reaction.status = INSUFFICIENT_BASELINE
        return
    reaction.abnormal_return = move.value - mean
    if len(baseline.returns) < settings.baseline_min_days or not stdev:
        reaction.status = INSUFFICIENT_BASELINE
        return
    z = reaction.abnormal_return / stdev
    reaction.z_score = z
    reaction.p_value = normal_two_sided_p(z)
    reaction.significance = significance_level(reaction.p_value)
    as_far = sum(1 for value in baseline.returns if abs(value - mean) >= abs(reaction.abnormal_return))
    reaction.empirical_p_value = (1 + as_far) / (1 + len(baseline.returns))
    reaction.status = OK


# -- the event-study path ------------------------------------------------------------------------------


def event_paths(post: Post, bars: BarSource, calendar: TradingCalendar, settings: MarketSettings,
                reactions: Sequence[Reaction] = ()) -> list[EventPath]:  # fmt: skip
    """Each symbol's cumulative abnormal return on ``settings.event_grid`` around ``post`` (intraday bars
    only: a symbol with none gets no path). The drift removed is the baseline mean per trading minute of
    the longest window among ``reactions`` of that symbol that has one (none: no drift removed)."""
    try:
        event = _event(calendar, post)
    except CalendarError:
        return []
    seconds = resolution_seconds(settings.intraday_resolution)
    paths = []
    for symbol in post.symbols:
        series = _intraday_series(post, symbol, bars, calendar, settings, event)
        if not series.ends:
            continue
        drift = _drift_per_minute(symbol, reactions, settings)
        base_end = calendar.bar_end_at_or_before_s(event.start, seconds)
        base = None if base_end is None else series.price_at(base_end)
        car: list[float | None] = []
        for minutes in settings.event_grid:
            if base is None or base[0] != base_end:
                car.append(None)
                continue
            try:
                moment = calendar.add_trading_seconds_s(event.start, minutes * 60) if minutes else event.start
            except CalendarError:
                car.append(None)
                continue
            expected = calendar.bar_end_at_or_before_s(moment, seconds)
            found = series.price_at(moment)
            if found is None or found[0] != expected:
                car.append(None)
            else:
                car.append(found[1] / base[1] - 1.0 - drift * minutes)
        paths.append(EventPath(post.content_id, symbol, settings.event_grid, car))
    return paths


def _drift_per_minute(symbol: str, reactions: Sequence[Reaction], settings: MarketSettings) -> float:
    windows = {window.label: window for window in settings.windows}
    best: tuple[int, float] | None = None
    for reaction in reactions:
        window = windows.get(reaction.window)
        if reaction.symbol != symbol or window is None or reaction.baseline is None:
            continue
        mean = reaction.baseline.mean
        minutes = window.minutes or window.sessions * SESSION_MINUTES
        if mean is not None and (best is None or minutes > best[0]):
            best = (minutes, mean)
    return 0.0 if best is None else best[1] / best[0]
