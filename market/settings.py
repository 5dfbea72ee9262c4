"""The market settings, read from the environment in one function (``market_settings``).

| variable | default | meaning |
| --- | --- | --- |
| ``VOLFEFE_MARKET_CALENDAR`` | ``XNYS`` | the exchange calendar (``exchange_calendars`` name) of every symbol |
| ``VOLFEFE_REACTION_WINDOWS`` | ``1h,4h,1d`` | windows after the post: ``<n>m``/``<n>h`` of trading time, ``<n>d`` sessions |
| ``VOLFEFE_BASELINE_DAYS`` | ``60`` | sessions before the post whose same-length returns form the baseline |
| ``VOLFEFE_BASELINE_MIN_DAYS`` | ``20`` | fewer complete baseline returns than this: no z-score |
| ``VOLFEFE_INTRADAY_RESOLUTION`` | ``1m`` | the bars the intraday windows read (``price_bars.resolution``) |
| ``VOLFEFE_EVENT_GRID`` | ``-1h..1d/15m`` | the event-study curve: from, to (``1d``: one session of 390 minutes), step |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from errors import VolfefeError
from market.bars import DAILY, parse_resolution
from market.calendar import DEFAULT_CALENDAR

#: the reaction windows when VOLFEFE_REACTION_WINDOWS is unset.
DEFAULT_WINDOWS = "1h,4h,1d"
#: sessions (trading days) before the post that form the baseline: about three months, enough returns
#: for a standard deviation (60 of them) while the volatility regime is still the post's.
DEFAULT_BASELINE_DAYS = 60
#: complete baseline returns (sessions) needed for a z-score.
DEFAULT_BASELINE_MIN_DAYS = 20
#: the intraday bars' resolution (minute bars).
DEFAULT_INTRADAY_RESOLUTION = "1m"
#: the event-study grid: from 1 hour before to one session after the post, a point every 15 minutes.
DEFAULT_EVENT_GRID = "-1h..1d/15m"
#: trading minutes that ``1d`` stands for on the event-study grid (a regular NYSE session).
SESSION_MINUTES = 390

_WINDOW = re.compile(r"([1-9][0-9]{0,4})([mhd])")
_GRID = re.compile(r"(-?[0-9]+[mhd])\.\.(-?[0-9]+[mhd])/([1-9][0-9]*[mh])")


class MarketConfigError(VolfefeError):
    """A market setting that cannot be read."""


@dataclass(frozen=True)
class Window:
    """A reaction window: ``minutes`` of trading time, or ``sessions`` trading days (one is 0)."""

    label: str
    minutes: int = 0
    sessions: int = 0

    @property
    def trading_seconds(self) -> int:
        return self.minutes * 60


@dataclass(frozen=True)
class MarketSettings:
    calendar: str = DEFAULT_CALENDAR
    windows: tuple[Window, ...] = ()
    baseline_days: int = DEFAULT_BASELINE_DAYS
    baseline_min_days: int = DEFAULT_BASELINE_MIN_DAYS
    intraday_resolution: str = DEFAULT_INTRADAY_RESOLUTION
    #: the event-study grid's points, in trading minutes from the post (negative: before).
    event_grid: tuple[int, ...] = ()


def parse_window(label: str) -> Window:
    """``30m``, ``1h``, ``4h`` (trading time) or ``1d``, ``5d`` (sessions)."""
    text = label.strip().lower()
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise MarketConfigError(f"reaction window {label!r} is not <n>m, <n>h or <n>d (e.g. 1h, 4h, 1d)")
    count, unit = int(match.group(1)), match.group(2)
    if unit == "d":
        return Window(text, sessions=count)
    return Window(text, minutes=count * (60 if unit == "h" else 1))


def parse_windows(text: str) -> tuple[Window, ...]:
    windows = tuple(parse_window(part) for part in text.split(",") if part.strip())
    if not windows:
        raise MarketConfigError("VOLFEFE_REACTION_WINDOWS names no window (e.g. 1h,4h,1d)")
    if len({window.label for window in windows}) != len(windows):
        raise MarketConfigError(f"VOLFEFE_REACTION_WINDOWS names a window twice: {text!r}")
    return windows


def _grid_minutes(label: str) -> int:
    sign = -1 if label.startswith("-") else 1
    count, unit = int(label.lstrip("-")[:-1]), label[-1]
    return sign * count * {"m": 1, "h": 60, "d": SESSION_MINUTES}[unit]


def parse_event_grid(text: str) -> tuple[int, ...]:
    """``FROM..TO/STEP`` (``-1h..1d/15m``) as trading minutes from the post, 0 always included."""
    match = _GRID.fullmatch(text.strip().lower())
    if match is None:
        raise MarketConfigError(f"VOLFEFE_EVENT_GRID {text!r} is not FROM..TO/STEP (e.g. -1h..1d/15m)")
    start, end, step = (_grid_minutes(part) for part in match.groups())
    if not start <= 0 < end:
        raise MarketConfigError(
            f"VOLFEFE_EVENT_GRID {text!r} must run from at or before the post to after it"
        )
    before = list(range(0, start - 1, -step))[::-1]
    return tuple(before + list(range(step, end + 1, step)))


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MarketConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise MarketConfigError(f"{name}={raw!r} must be at least 1")
    return value


def market_settings(environ: Mapping[str, str] | None = None) -> MarketSettings:
    """The market settings from ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    baseline_days = _positive_int(env, "VOLFEFE_BASELINE_DAYS", DEFAULT_BASELINE_DAYS)
    baseline_min = _positive_int(
        env, "VOLFEFE_BASELINE_MIN_DAYS", min(DEFAULT_BASELINE_MIN_DAYS, baseline_days)
    )
    if baseline_min > baseline_days:
        raise MarketConfigError(
            f"VOLFEFE_BASELINE_MIN_DAYS={baseline_min} is more than VOLFEFE_BASELINE_DAYS={baseline_days}"
        )
    try:
        resolution = parse_resolution(
            env.get("VOLFEFE_INTRADAY_RESOLUTION", "") or DEFAULT_INTRADAY_RESOLUTION
        )
    except ValueError as error:
        raise MarketConfigError(f"VOLFEFE_INTRADAY_RESOLUTION: {error}") from None
    if resolution == DAILY:
        raise MarketConfigError("VOLFEFE_INTRADAY_RESOLUTION must be intraday (e.g. 1m, 5m), not 1d")
    return MarketSettings(
        calendar=(env.get("VOLFEFE_MARKET_CALENDAR", "") or DEFAULT_CALENDAR).strip(),
        windows=parse_windows(env.get("VOLFEFE_REACTION_WINDOWS", "") or DEFAULT_WINDOWS),
        baseline_days=baseline_days,
        baseline_min_days=baseline_min,
        intraday_resolution=resolution,
        event_grid=parse_event_grid(env.get("VOLFEFE_EVENT_GRID", "") or DEFAULT_EVENT_GRID),
    )
