"""An exchange's trading sessions, from ``exchange_calendars`` (DST, holidays, half days, breaks).

The library gives the schedule; this module keeps it as sorted lists of Unix seconds so that the
reaction of 100,000 posts (each with 60 baseline days) is bisections, not pandas calls. Trading time
is time inside a session's open..close, less any break (lunch on some Asian exchanges).

Public functions take and return timezone-aware datetimes; the ``*_s`` methods take and return Unix
seconds for the reaction's inner loops.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache

from errors import VolfefeError

#: the exchange calendar when none is configured (New York Stock Exchange).
DEFAULT_CALENDAR = "XNYS"
#: the first session the calendar knows by default (posts and bars before it cannot be placed).
DEFAULT_FIRST_SESSION = "2000-01-03"


class CalendarError(VolfefeError):
    """An unknown calendar name, or a moment outside the sessions the calendar knows."""


def to_seconds(moment: datetime) -> int:
    """Unix seconds of an aware datetime (a naive one is refused: its zone would be a guess)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return int(moment.timestamp())


def to_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    session: int


class TradingCalendar:
    """The sessions of one exchange, from ``first_session`` to the library's last (about a year ahead)."""

    def __init__(self, name: str = DEFAULT_CALENDAR, first_session: str = DEFAULT_FIRST_SESSION) -> None:
        import exchange_calendars
        from exchange_calendars.errors import InvalidCalendarName

        try:
            calendar = exchange_calendars.get_calendar(name, start=first_session)
        except InvalidCalendarName:
            raise CalendarError(
                f"unknown exchange calendar {name!r} (e.g. XNYS, XNAS, XLON, XTKS; "
                "exchange_calendars.get_calendar_names() lists them)"
            ) from None
        schedule = calendar.schedule
        self.name = name
        #: each session's date, in order; a session's index in this list names it elsewhere.
        self.sessions: list[date] = [day.date() for day in schedule.index]
        self.opens: list[int] = [int(moment.timestamp()) for moment in schedule["open"]]
        self.closes: list[int] = [int(moment.timestamp()) for moment in schedule["close"]]
        segments: list[_Segment] = []
        for index, (opening, break_start, break_end, closing) in enumerate(
            zip(self.opens, schedule["break_start"], schedule["break_end"], self.closes, strict=True)
        ):
            if break_start is not None and break_start == break_start:  # NaT != NaT: no break
                segments.append(_Segment(opening, int(break_start.timestamp()), index))
                segments.append(_Segment(int(break_end.timestamp()), closing, index))
            else:
                segments.append(_Segment(opening, closing, index))
        self._segments = segments
        self._starts = [segment.start for segment in segments]
        self._ends = [segment.end for segment in segments]
        self._session_index = {day: index for index, day in enumerate(self.sessions)}
        self._bar_prefix: dict[int, list[int]] = {}
        # Trading seconds before each segment since the first, for trading-time differences.
        self._elapsed: list[int] = []
        total = 0
        for segment in segments:
            self._elapsed.append(total)
            total += segment.end - segment.start

    # -- where a moment falls ----------------------------------------------------------------------

    def _segment_at_or_after(self, moment: int) -> int:
        """Index of the segment containing ``moment``, else of the next one (may be len(segments))."""
        return bisect_right(self._ends, moment)

    def _check(self, moment: int) -> None:
        if not self._starts or moment < self._starts[0] or moment >= self._ends[-1]:
            raise CalendarError(
                f"{to_datetime(moment).isoformat()} is outside the {self.name} sessions this calendar knows "
                f"({self.sessions[0]} to {self.sessions[-1]})"
            )

    def is_open_s(self, moment: int) -> bool:
        index = self._segment_at_or_after(moment)
        return index < len(self._segments) and self._starts[index] <= moment

    def segment_end_s(self, moment: int) -> int | None:
        """When trading that is going on at ``moment`` stops (a close or a break); None when closed."""
        index = self._segment_at_or_after(moment)
        if index < len(self._segments) and self._starts[index] <= moment:
            return self._ends[index]
        return None

    def next_open_s(self, moment: int) -> int:
        """``moment`` when the market is open then, else the next open (after a close or a break)."""
        self._check(moment)
        index = self._segment_at_or_after(moment)
        return max(moment, self._starts[index])

    def session_of_s(self, moment: int) -> int:
        """Index of the session trading at ``moment``, else of the next session to open."""
        self._check(moment)
        return self._segments[self._segment_at_or_after(moment)].session

    def last_close_at_or_before_s(self, moment: int) -> int | None:
        """Index of the last session that closed at or before ``moment`` (None: none did)."""
        index = bisect_right(self.closes, moment) - 1
        return index if index >= 0 else None

    def trading_offset_s(self, moment: int) -> int:
        """Trading seconds from the open of ``moment``'s session (``session_of_s``) to ``moment``;
        0 when the market is closed at ``moment``."""
        index = self._segment_at_or_after(moment)
        if index >= len(self._segments) or moment < self._starts[index]:
            return 0
        opening = bisect_left(self._starts, self.opens[self._segments[index].session])
        return self._elapsed[index] - self._elapsed[opening] + moment - self._starts[index]

    def at_trading_offset_s(self, session: int, offset: int) -> int:
        """The moment ``offset`` trading seconds after ``session``'s open, at most its close."""
        if not 0 <= session < len(self.sessions):
            raise CalendarError(f"session {session} is outside the {self.name} sessions this calendar knows")
        return self.add_trading_seconds_s(self.opens[session], offset, limit=self.closes[session])

    def add_trading_seconds_s(self, moment: int, seconds: int, limit: int | None = None) -> int:
        """The moment ``seconds`` of trading time after ``moment`` (before it when negative).

        From a closed market, counting starts at the next open (backwards: at the last close); landing
        exactly on a close gives the close, not the next open. ``limit`` caps the result.
        """
        self._check(moment)
        if seconds >= 0:
            index = self._segment_at_or_after(moment)
            position = max(moment, self._starts[index])
            target = self._elapsed[index] + position - self._starts[index] + seconds
        else:
            index = bisect_left(self._starts, moment) - 1  # the segment whose start is before moment
            position = min(moment, self._ends[index])
            target = self._elapsed[index] + position - self._starts[index] + seconds
        found = bisect_right(self._elapsed, target) - 1
        if found < 0:
            raise CalendarError(
                f"{seconds} s of trading time from {to_datetime(moment).isoformat()} "
                f"is before the first {self.name} session this calendar knows"
            )
        result = self._starts[found] + target - self._elapsed[found]
        if result > self._ends[found]:  # exactly at the end of the last segment counted
            raise CalendarError(
                f"{seconds} s of trading time from {to_datetime(moment).isoformat()} "
                f"is after the last {self.name} session this calendar knows"
            )
        # A target at a segment's end is that segment's close, not the next segment's open.
        if found > 0 and target == self._elapsed[found] and seconds > 0:
            result = self._ends[found - 1]
        return result if limit is None else min(result, limit)

    def trading_seconds_between_s(self, start: int, end: int) -> int:
        """Trading seconds in ``[start, end)``."""
        return self._trading_position(end) - self._trading_position(start)

    def _trading_position(self, moment: int) -> int:
        index = self._segment_at_or_after(moment)
        if index >= len(self._segments):
            return self._elapsed[-1] + self._ends[-1] - self._starts[-1]
        return self._elapsed[index] + max(0, moment - self._starts[index])

    # -- bars on the session grid ------------------------------------------------------------------

    def bar_end_at_or_before_s(self, moment: int, resolution: int) -> int | None:
        """When the last bar of ``resolution`` seconds that a complete feed has ended at or before
        ``moment``: bars start at each segment's start and every ``resolution`` after, and one that
        runs past the segment's end ends there. None before the first segment's first bar."""
        index = bisect_right(self._starts, moment) - 1  # the last segment started at or before moment
        if index < 0:
            return None
        start, end = self._starts[index], self._ends[index]
        if moment >= end:
            return end
        steps = (moment - start) // resolution
        if steps >= 1:
            return start + steps * resolution
        return self._ends[index - 1] if index > 0 else None

    def bar_ends_between_s(self, after: int, until: int, resolution: int) -> int:
        """How many bars of ``resolution`` seconds a complete feed has that end in ``(after, until]``."""
        if until <= after:
            return 0
        return self._bar_ends_up_to(until, resolution) - self._bar_ends_up_to(after, resolution)

    def _bar_ends_up_to(self, moment: int, resolution: int) -> int:
        """Bars of a complete feed that end at or before ``moment``, counted from the first segment."""
        index = bisect_right(self._starts, moment) - 1
        if index < 0:
            return 0
        whole = self._whole_segment_bars(index, resolution)
        start, end = self._starts[index], self._ends[index]
        if moment >= end:
            return whole + -(-(end - start) // resolution)
        return whole + (moment - start) // resolution

    def _whole_segment_bars(self, index: int, resolution: int) -> int:
        """Bars in the segments before ``index``, cached per resolution (prefix sums)."""
        prefix = self._bar_prefix.get(resolution)
        if prefix is None:
            prefix = [0]
            for start, end in zip(self._starts, self._ends, strict=True):
                prefix.append(prefix[-1] + -(-(end - start) // resolution))
            self._bar_prefix[resolution] = prefix
        return prefix[index]

    # -- sessions ----------------------------------------------------------------------------------

    def session_index(self, day: date) -> int | None:
        """The index of the session on ``day``; None when the exchange does not trade that day."""
        return self._session_index.get(day)

    # -- the same, with datetimes ------------------------------------------------------------------

    def is_open(self, moment: datetime) -> bool:
        """Whether the market trades at ``moment`` (open included, close excluded, breaks closed)."""
        return self.is_open_s(to_seconds(moment))

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` itself when the market is open then, else the next open."""
        return to_datetime(self.next_open_s(to_seconds(moment)))

    def session_of(self, moment: datetime) -> date:
        """The session trading at ``moment``, else the next one to open."""
        return self.sessions[self.session_of_s(to_seconds(moment))]

    def sessions_before(self, day: date, count: int) -> list[date]:
        """The ``count`` sessions before ``day`` (a session, or any date: the sessions before it),
        oldest first."""
        index = bisect_left(self.sessions, day)
        if index - count < 0:
            raise CalendarError(f"fewer than {count} {self.name} sessions before {day} in this calendar")
        return self.sessions[index - count : index]

    def add_trading_days(self, day: date, count: int) -> date:
        """The session ``count`` sessions after ``day`` (before it when negative); ``day`` must be one."""
        index = self._session_index.get(day)
        if index is None:
            raise CalendarError(f"{day} is not a {self.name} session")
        if not 0 <= index + count < len(self.sessions):
            raise CalendarError(f"{count} sessions from {day} is outside this calendar's sessions")
        return self.sessions[index + count]

    def open_close(self, day: date) -> tuple[datetime, datetime]:
        """The open and close of the session on ``day``."""
        index = self._session_index.get(day)
        if index is None:
            raise CalendarError(f"{day} is not a {self.name} session")
        return to_datetime(self.opens[index]), to_datetime(self.closes[index])

    def add_trading_time(self, moment: datetime, seconds: int) -> datetime:
        """``seconds`` of trading time after ``moment`` (see ``add_trading_seconds_s``)."""
        return to_datetime(self.add_trading_seconds_s(to_seconds(moment), seconds))


@cache
def trading_calendar(
    name: str = DEFAULT_CALENDAR, first_session: str = DEFAULT_FIRST_SESSION
) -> TradingCalendar:
    """The process-wide calendar of ``name`` (built once: about 0.3 s)."""
    return TradingCalendar(name, first_session)
