"""Which posts the sentiment picture covers: one source, one author, a range of days (each optional).

A post's day is its ``published_at`` when it has one, else the day it was imported (``created_at``),
in UTC; ``since`` and ``until`` are both included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from errors import VolfefeError

#: characters of a rejected value quoted back in a message.
QUOTED_CHARS = 40
#: the filters' names, as query parameters of ``/report`` and options of ``volfefe report --html``.
FILTER_NAMES = ("source", "author", "since", "until")


class InvalidSelection(VolfefeError):
    """A filter of the sentiment picture has a value that cannot be used (a bad date, an empty range)."""


@dataclass(frozen=True)
class Selection:
    """The posts to picture: all of them when every field is None."""

    source: str | None = None
    author: str | None = None
    #: first day included (UTC).
    since: date | None = None
    #: last day included (UTC).
    until: date | None = None

    def describe(self) -> str:
        """One line for the page: ``all posts`` or ``source "x", author "y", from 2024-01-01``."""
        parts = []
        if self.source is not None:
            parts.append(f"source “{self.source}”")
        if self.author is not None:
            parts.append(f"author “{self.author}”")
        if self.since is not None:
            parts.append(f"from {self.since.isoformat()}")
        if self.until is not None:
            parts.append(f"until {self.until.isoformat()}")
        return ", ".join(parts) if parts else "all posts"

    def as_strings(self) -> dict[str, str]:
        """Each filter as the text a form field shows ("" when unset)."""
        return {
            "source": self.source or "",
            "author": self.author or "",
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }


def parse_day(value: str | None, name: str) -> date | None:
    """``value`` (``YYYY-MM-DD``) as a date; None when blank; InvalidSelection otherwise."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) != len("YYYY-MM-DD"):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidSelection(f"{name} {text[:QUOTED_CHARS]!r} is not a date (YYYY-MM-DD)") from None


def make_selection(
    source: str | None = None, author: str | None = None, since: str | None = None, until: str | None = None
) -> Selection:
    """A Selection from text (a form, the command line); blank means unset. InvalidSelection when
    a date is not ``YYYY-MM-DD`` or ``since`` is after ``until``."""
    first, last = parse_day(since, "since"), parse_day(until, "until")
    if first is not None and last is not None and first > last:
        raise InvalidSelection(f"since {first.isoformat()} is after until {last.isoformat()}: no day is left")
    return Selection(
        source=source.strip() if source and source.strip() else None,
        author=author.strip() if author and author.strip() else None,
        since=first,
        until=last,
    )


def selection_from_query(arguments: Mapping[str, str]) -> Selection:
    """The Selection named by a request's query parameters (``source``, ``author``, ``since``, ``until``)."""
    return make_selection(*(arguments.get(name) for name in FILTER_NAMES))
