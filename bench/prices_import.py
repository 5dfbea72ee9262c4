"""Import of synthetic minute bars (``volfefe import-prices``'s code) on SQLite and a private PostgreSQL.

    python -m bench.prices_import [--bars 1000000] [--symbols 4] [--backend sqlite --backend postgresql]

Generates the file first (seeded random walks on real XNYS sessions, CSV as a vendor would give it),
then times, per backend: the first import into an empty table, and the same file again (everything
already present: the idempotent path). The file generation is not timed. Prints the load average at
the start and end of each run: the figures are only as good as the machine is idle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

#: the first session of the synthetic bars.
FIRST_SESSION = date(2015, 1, 2)


def generate(path: Path, bars: int, symbols: int) -> int:
    """``bars`` minute bars split over ``symbols`` symbols, written to ``path`` (CSV)."""
    from market.calendar import trading_calendar
    from market.synthetic import SyntheticBar, intraday_bars, write_bars

    calendar = trading_calendar()
    per_symbol = -(-bars // symbols)
    first = calendar.session_index(FIRST_SESSION)
    assert first is not None
    # Regular sessions have 390 minute bars; take enough sessions, then cut at the count.
    last = calendar.sessions[min(first + per_symbol // 380 + 2, len(calendar.sessions) - 1)]

    def rows() -> Iterator[SyntheticBar]:
        written = 0
        for number in range(symbols):
            symbol_bars = intraday_bars(
                calendar, f"SYM{number}", FIRST_SESSION, last, seed=number, sigma=0.0008
            )
            for index, bar in enumerate(symbol_bars):
                if index >= per_symbol or written >= bars:
                    break
                written += 1
                yield bar

    return write_bars(path, rows())


def measure(url: str, path: Path) -> list[tuple[str, float, str]]:
    from db.migrate import upgrade
    from db.session import engine_for
    from market.importer import import_prices

    upgrade(url)
    engine = engine_for(url)
    runs = []
    for label in ("first import", "same file again"):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        report = import_prices(engine, path, "1m")
        seconds = time.perf_counter() - started
        counts = (
            f"inserted {report.inserted:,}, already present {report.already_present:,}, "
            f"conflicting {report.conflicting_total}, rejected {report.rejected_total}"
        )
        runs.append((label, seconds, f"{counts}; load {load:.2f} -> {os.getloadavg()[0]:.2f}"))
    engine.dispose()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    options = parser.parse_args()
    backends = options.backend or ["sqlite", "postgresql"]

    base = Path(tempfile.mkdtemp(prefix="volfefe-prices-bench-"))
    base.chmod(0o755)  # the server runs as the postgres user when we are root
    server = None
    try:
        path = base / "bars.csv"
        started = time.perf_counter()
        count = generate(path, options.bars, options.symbols)
        print(
            f"{count:,} minute bars of {options.symbols} symbols, {path.stat().st_size / 1e6:.0f} MB CSV "
            f"(generated in {time.perf_counter() - started:.0f} s)"
        )
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite:///{base / 'bench.db'}"
            else:
                from tests.servers import PostgresServer

                server = PostgresServer(base / "data")
                server.start()
                url = server.create_database("prices_bench")
            for label, seconds, detail in measure(url, path):
                print(
                    f"  {backend:<10} {label:<16} {seconds:7.1f} s  {count / seconds:>9,.0f} bars/s  ({detail})"
                )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
