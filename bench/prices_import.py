"""Import of synthetic minute bars (``volfefe import-prices``'s code) on SQLite and a private PostgreSQL.

    python -m bench.prices_import [--bars 1000000] [--symbols 4] [--backend sqlite --backend postgresql]

Generates the file first (seeded random walks on real XNYS sessions, CSV as a vendor would give it),
then times, per backend: the first import into an empty table, and the same file again (everything
already present: the idempotent path). The file generation is not timed. Prints the load average at
the start and end of each run: the figures are only as good as the machine is idle. ``bench.run``
calls ``measure_prices_import`` (part ``prices``, PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

#: the first session of the synthetic bars.
FIRST_SESSION = date(2015, 1, 2)
#: minute bars imported, and the symbols they are split over.
DEFAULT_BARS = 1_000_000
DEFAULT_SYMBOLS = 4


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


def measure(url: str, path: Path) -> list[dict[str, Any]]:
    """The first import and the same file again into the migrated database at ``url``."""
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
        runs.append(
            {
                "label": label,
                "s": seconds,
                "inserted": report.inserted,
                "already_present": report.already_present,
                "conflicting": report.conflicting_total,
                "rejected": report.rejected_total,
                "load_start": load,
                "load_end": os.getloadavg()[0],
            }
        )
    engine.dispose()
    return runs


def run_line(backend: str, bars: int, run: dict[str, Any]) -> str:
    """One run as the command prints it."""
    return (
        f"  {backend:<10} {run['label']:<16} {run['s']:7.1f} s  {bars / run['s']:>9,.0f} bars/s  "
        f"(inserted {run['inserted']:,}, already present {run['already_present']:,}, "
        f"conflicting {run['conflicting']}, rejected {run['rejected']}; "
        f"load {run['load_start']:.2f} -> {run['load_end']:.2f})"
    )


def measure_prices_import(
    work_dir: Path,
    bars: int = DEFAULT_BARS,
    symbols: int = DEFAULT_SYMBOLS,
    backends: Sequence[str] = ("postgresql",),
) -> dict[str, Any]:
    """Generate ``bars`` minute bars of ``symbols`` symbols, then time their import on each backend
    (PostgreSQL: a private server, stopped afterwards); every figure, and the lines the command prints."""
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)  # the server runs as the postgres user when we are root
    path = work_dir / "bars.csv"
    started = time.perf_counter()
    count = generate(path, bars, symbols)
    figures: dict[str, Any] = {
        "bars": count,
        "symbols": symbols,
        "csv_mb": path.stat().st_size / 1e6,
        "generated_s": time.perf_counter() - started,
        "backends": {},
    }
    lines = [
        f"{count:,} minute bars of {symbols} symbols, {figures['csv_mb']:.0f} MB CSV "
        f"(generated in {figures['generated_s']:.0f} s)"
    ]
    print(lines[0], flush=True)
    server = None
    try:
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite:///{work_dir / 'bench.db'}"
            else:
                from tests.servers import PostgresServer

                server = PostgresServer(work_dir / "data")
                server.start()
                url = server.create_database("prices_bench")
            runs = measure(url, path)
            figures["backends"][backend] = runs
            for run in runs:
                lines.append(run_line(backend, count, run))
                print(lines[-1], flush=True)
    finally:
        if server is not None:
            server.stop()
        path.unlink(missing_ok=True)
    figures["output"] = lines
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=DEFAULT_BARS)
    parser.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="volfefe-prices-bench-"))
    try:
        measure_prices_import(
            base, options.bars, options.symbols, options.backend or ["sqlite", "postgresql"]
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
