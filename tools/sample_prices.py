"""Synthetic minute bars for the sample posts, so that the flow from posts and prices to the answer can be
tried without market data (none is shipped: real bars are licensed).

    python -m tools.sample_prices [--out FILE] [--posts FILE] [--seed N]

For every dated post of ``--posts`` (default: the shipped ``data/sample_posts.csv``), the assets it is
linked to (``entities``, by the environment's asset list; the default symbol when it names none) get
minute bars on the exchange calendar's sessions (VOLFEFE_MARKET_CALENDAR, XNYS: DST, holidays and half
days) from BASELINE_MARGIN sessions more than the baseline (VOLFEFE_BASELINE_DAYS, 60) before the post
to SESSIONS_AFTER sessions after it: each symbol's bars cover the union of its posts' spans, one seeded
random walk (SIGMA per minute, about 1% a day). Every symbol trades on the one calendar, bitcoin too.

A few shipped posts get a planted move (PLANTED): the close of the first bar at or after the post (or
at the next open) is multiplied by ``1 + step``, in the direction the text reads. Posts of another file
get none. The same seed writes the same file, byte for byte. Writes CSV, or JSON Lines for ``.jsonl``;
prints what it wrote and the planted moves.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from db.importer import ImportFileError, parse_post, read_rows
from entities.extract import default_extractor
from errors import VolfefeError
from market.calendar import TradingCalendar, to_datetime, to_seconds, trading_calendar
from market.settings import market_settings
from market.synthetic import SyntheticBar, intraday_bars, write_bars

SAMPLE_POSTS = Path(__file__).resolve().parent.parent / "data" / "sample_posts.csv"
#: where the bars go by default (``var/`` is the project's untracked data folder).
DEFAULT_OUT = Path("var/sample_prices.csv")
#: the seed of the random walks.
DEFAULT_SEED = 17
#: standard deviation of a minute's log return (about 1% over a 390-minute session).
SIGMA = 0.0006
#: sessions of bars before a post beyond the baseline's (a window that starts at the next open).
BASELINE_MARGIN = 3
#: sessions of bars after a post's session (the 1d window ends one session later; a post after the
#: close starts at the next open).
SESSIONS_AFTER = 2
#: the first price of each symbol's walk.
START_PRICE = 100.0
#: decimals of the prices written (a vendor's tick; 17 significant digits would double the file).
PRICE_DECIMALS = 4
#: (source, external_id) of a shipped post -> (symbol, step): the planted reaction, in the text's direction.
PLANTED = {
    ("social", "ts-1001"): ("SPY", 0.02),  # "The Stock Market is at an ALL TIME HIGH"
    ("social", "ts-1004"): ("FXI", -0.04),  # tariffs on Chinese goods to 145%
    ("news", "rt-2001"): ("AAPL", -0.04),  # "Apple shares slide 4% after iPhone sales miss"
    ("news", "rt-2002"): ("NVDA", 0.05),  # "Nvidia posts record quarterly revenue"
    ("news", "bb-3003"): ("UNH", -0.06),  # "UnitedHealth plunges after suspending guidance"
    ("twitter", "tw-4005"): ("NVDA", 0.03),  # "Massive beat from $NVDA"
}


class SamplePricesError(VolfefeError):
    """The posts cannot be read, or no post can be priced."""


@dataclass(frozen=True)
class PricedPost:
    source: str
    external_id: str
    published_at: datetime
    symbols: tuple[str, ...]


def dated_posts(path: Path) -> list[PricedPost]:
    """The posts of ``path`` that have a publication time, each with the symbols it is linked to."""
    rows = []
    for line, row in read_rows(path):
        try:
            if isinstance(row, ValueError):
                raise row
            post = parse_post(row)
        except ValueError as error:
            raise SamplePricesError(f"{path}: line {line}: {error}") from None
        if post["published_at"] is not None:
            rows.append(post)
    extracted = default_extractor().entities_of_posts([post["text"] for post in rows])
    return [
        PricedPost(
            post["source"],
            post["external_id"],
            post["published_at"],
            tuple(link.symbol for link in found.links),
        )
        for post, found in zip(rows, extracted, strict=True)
    ]


def event_start(calendar: TradingCalendar, published: datetime) -> int:
    """The start of the first bar whose close follows the post: its minute when the market is open, else
    the next open (Unix seconds)."""
    moment = to_seconds(published)
    return calendar.next_open_s(moment - moment % 60)


def session_spans(
    calendar: TradingCalendar, posts: Sequence[PricedPost], baseline_days: int
) -> dict[str, set[int]]:
    """Symbol -> the session indexes its bars must cover."""
    spans: dict[str, set[int]] = {}
    last = len(calendar.sessions) - 1
    for post in posts:
        session = calendar.session_of_s(event_start(calendar, post.published_at))
        first = max(0, session - baseline_days - BASELINE_MARGIN)
        for symbol in post.symbols:
            spans.setdefault(symbol, set()).update(range(first, min(last, session + SESSIONS_AFTER) + 1))
    return spans


def runs(indexes: set[int]) -> list[tuple[int, int]]:
    """Consecutive session indexes as (first, last) runs, in order."""
    found: list[tuple[int, int]] = []
    for index in sorted(indexes):
        if found and index == found[-1][1] + 1:
            found[-1] = (found[-1][0], index)
        else:
            found.append((index, index))
    return found


def symbol_bars(
    calendar: TradingCalendar, symbol: str, sessions: set[int], steps: dict[int, float], seed: int
) -> Iterator[SyntheticBar]:
    """``symbol``'s bars over ``sessions``: one walk, each run of sessions going on from the last close."""
    price = START_PRICE
    symbol_seed = seed * 1_000_003 + zlib.crc32(symbol.encode())
    for number, (first, last) in enumerate(runs(sessions)):
        bar = None
        for bar in intraday_bars(
            calendar,
            symbol,
            calendar.sessions[first],
            calendar.sessions[last],
            seed=symbol_seed + number,
            sigma=SIGMA,
            start_price=price,
            steps=steps,
        ):
            yield replace(
                bar,
                open=round(bar.open, PRICE_DECIMALS),
                high=round(bar.high, PRICE_DECIMALS),
                low=round(bar.low, PRICE_DECIMALS),
                close=round(bar.close, PRICE_DECIMALS),
            )
        if bar is not None:
            price = bar.close


@dataclass(frozen=True)
class Planted:
    external_id: str
    symbol: str
    step: float
    #: the bar whose close carries the step (Unix seconds).
    at: int


def write_sample_prices(
    out: Path, posts_path: Path = SAMPLE_POSTS, seed: int = DEFAULT_SEED
) -> tuple[int, dict[str, int], list[Planted]]:
    """Write the bars; (bars written, sessions per symbol, the planted moves)."""
    settings = market_settings()
    calendar = trading_calendar(settings.calendar)
    posts = dated_posts(posts_path)
    if not posts:
        raise SamplePricesError(f"{posts_path}: no post has a published_at: nothing to price")
    spans = session_spans(calendar, posts, settings.baseline_days)
    planted = [
        Planted(
            post.external_id,
            *PLANTED[(post.source, post.external_id)],
            event_start(calendar, post.published_at),
        )
        for post in posts
        if (post.source, post.external_id) in PLANTED
        and PLANTED[(post.source, post.external_id)][0] in post.symbols
    ]
    steps: dict[str, dict[int, float]] = {}
    for move in planted:
        steps.setdefault(move.symbol, {})[move.at] = move.step
    out.parent.mkdir(parents=True, exist_ok=True)
    bars = (
        bar
        for symbol in sorted(spans)
        for bar in symbol_bars(calendar, symbol, spans[symbol], steps.get(symbol, {}), seed)
    )
    written = write_bars(out, bars)
    return written, {symbol: len(sessions) for symbol, sessions in sorted(spans.items())}, planted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sample_prices", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"the file to write (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--posts", type=Path, default=SAMPLE_POSTS, help="the posts to price (default: the sample)"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"the random walks' seed (default {DEFAULT_SEED})"
    )
    args = parser.parse_args(argv)
    try:
        written, sessions, planted = write_sample_prices(args.out, args.posts, args.seed)
    except (VolfefeError, ImportFileError) as error:
        print(f"sample_prices: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"sample_prices: error: {error.filename or args.out}: {error.strerror or error}", file=sys.stderr
        )
        return 1
    print(
        f"wrote {written} synthetic minute bars of {len(sessions)} symbols to {args.out} "
        f"({sum(sessions.values())} symbol-sessions; seed {args.seed})"
    )
    for move in planted:
        print(
            f"  planted {move.step:+.0%} in {move.symbol} at {to_datetime(move.at):%Y-%m-%d %H:%M} UTC after {move.external_id}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
