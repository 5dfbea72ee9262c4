"""The reaction of many posts, read from ``price_bars`` (market.db_source), on SQLite or PostgreSQL.

    python -m bench.reactions [--posts 2000] [--sessions 250] [--backend sqlite|postgresql]

Imports ``--sessions`` sessions of synthetic minute bars of one symbol (not timed), then times
``post_reactions`` and ``event_paths`` for ``--posts`` posts spread over the last sessions (in time
order, as a sweep would take them), each linked to that symbol, with the default windows (1h, 4h,
1d) and a 60-session baseline. Prints the load average: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

#: the last session of the synthetic bars.
LAST_SESSION = date(2025, 6, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=250)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    options = parser.parse_args()

    from db.migrate import upgrade
    from db.session import engine_for, session_factory
    from market.calendar import to_datetime, trading_calendar
    from market.db_source import DatabaseBarSource
    from market.importer import import_prices
    from market.reaction import OtherPosts, Post, event_paths, post_reactions
    from market.settings import market_settings
    from market.synthetic import intraday_bars, write_bars

    calendar = trading_calendar()
    settings = market_settings({})
    last = calendar.session_index(LAST_SESSION)
    assert last is not None
    first = last - options.sessions
    base = Path(tempfile.mkdtemp(prefix="volfefe-reactions-bench-"))
    base.chmod(0o755)
    server = None
    try:
        if options.backend == "sqlite":
            url = f"sqlite:///{base / 'bench.db'}"
        else:
            from tests.servers import PostgresServer

            server = PostgresServer(base / "data")
            server.start()
            url = server.create_database("reactions_bench")
        upgrade(url)
        path = base / "bars.csv"
        bars = write_bars(
            path, intraday_bars(calendar, "SPY", calendar.sessions[first], LAST_SESSION, sigma=0.0006)
        )
        import_prices(engine_for(url), path, "1m")
        rng = random.Random(1)
        # Posts from after the first baseline to the session before the last, any time of day or week.
        start, end = calendar.opens[first + settings.baseline_days + 2], calendar.opens[last - 1]
        moments = sorted(rng.randrange(start, end) for _ in range(options.posts))
        posts = [
            Post(number, to_datetime(moment), "bench", ("SPY",)) for number, moment in enumerate(moments)
        ]
        others = OtherPosts.of([(post.content_id, post.published_at) for post in posts])
        load = os.getloadavg()[0]
        started = time.perf_counter()
        statuses: dict[str, int] = {}
        with session_factory(url)() as session:
            source = DatabaseBarSource(session, calendar)
            for post in posts:
                reactions = post_reactions(post, source, calendar, settings, others)
                event_paths(post, source, calendar, settings, reactions)
                for reaction in reactions:
                    statuses[reaction.status] = statuses.get(reaction.status, 0) + 1
        seconds = time.perf_counter() - started
        print(
            f"{options.backend}: {len(posts):,} posts x 1 symbol x 3 windows + event paths over {bars:,} minute bars "
            f"in {seconds:.1f} s = {seconds / len(posts) * 1000:.2f} ms per post "
            f"(100,000 posts: ~{seconds / len(posts) * 100_000 / 60:.0f} min); statuses {statuses}; "
            f"load {load:.2f} -> {os.getloadavg()[0]:.2f}"
        )
        engine_for(url).dispose()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
