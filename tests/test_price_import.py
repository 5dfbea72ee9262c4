"""``volfefe import-prices`` and market.importer on SQLite and a real PostgreSQL server; and the reaction
read through market.db_source from what was imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from db.importer import ImportFileError
from db.models import PriceBar
from db.session import engine_for, session_factory
from market.bars import InMemoryBarSource
from market.calendar import to_seconds, trading_calendar
from market.db_source import DatabaseBarSource
from market.importer import import_prices
from market.reaction import OK, OtherPosts, Post, post_reactions
from market.settings import market_settings
from market.synthetic import daily_bars, intraday_bars, write_bars

ROOT = Path(__file__).resolve().parent.parent
HEADER = "symbol,timestamp,open,high,low,close,volume\n"


def stored(url: str) -> dict[tuple[str, str, datetime], tuple]:
    with session_factory(url)() as session:
        rows = session.scalars(select(PriceBar)).all()
        return {
            (bar.symbol, bar.resolution, bar.ts.replace(tzinfo=UTC) if bar.ts.tzinfo is None else bar.ts): (
                bar.open, bar.high, bar.low, bar.close, bar.volume,
            )
            for bar in rows
        }  # fmt: skip


def run(url: str, path: Path, resolution: str | None = "1m", chunk_size: int = 50_000):
    return import_prices(engine_for(url), path, resolution, chunk_size=chunk_size)


def volfefe(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_csv_and_json_lines_load_the_same_bars_and_a_second_import_adds_nothing(
    migrated_db: str, tmp_path: Path
) -> None:
    csv_path = tmp_path / "bars.csv"
    csv_path.write_text(
        HEADER
        + "SPY,2025-06-10T13:30:00Z,600,601.5,599.5,601,1200\n"
        + "SPY,2025-06-10T09:31:00-04:00,601,602,600.5,601.25,\n"  # an offset: stored in UTC; no volume
        + "QQQ,1749562200,500,500,500,500,0\n",  # Unix seconds: 2025-06-10T13:30:00Z
        encoding="utf-8",
    )
    report = run(migrated_db, csv_path, chunk_size=2)
    assert (report.inserted, report.already_present, report.rejected_total, report.conflicting_total) == (
        3,
        0,
        0,
        0,
    )
    assert stored(migrated_db) == {
        ("SPY", "1m", utc(2025, 6, 10, 13, 30)): (600.0, 601.5, 599.5, 601.0, 1200.0),
        ("SPY", "1m", utc(2025, 6, 10, 13, 31)): (601.0, 602.0, 600.5, 601.25, None),
        ("QQQ", "1m", utc(2025, 6, 10, 13, 30)): (500.0, 500.0, 500.0, 500.0, 0.0),
    }
    jsonl = tmp_path / "bars.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {
                    "symbol": "SPY",
                    "timestamp": "2025-06-10T13:30:00+00:00",
                    "open": 600,
                    "high": 601.5,
                    "low": 599.5,
                    "close": 601,
                    "volume": 1200,
                },
                {
                    "symbol": "QQQ",
                    "timestamp": 1749562200,
                    "open": "500",
                    "high": 500,
                    "low": 500,
                    "close": 500,
                    "volume": 0,
                },
                {
                    "symbol": "QQQ",
                    "timestamp": 1749562260,
                    "open": 500,
                    "high": 501,
                    "low": 500,
                    "close": 501,
                    "volume": 10,
                    "resolution": "1m",
                },
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    report = run(migrated_db, jsonl)
    assert (report.inserted, report.already_present, report.rejected_total) == (1, 2, 0)
    assert report.read_as == "JSON Lines, UTF-8"
    for path in (csv_path, jsonl):
        again = run(migrated_db, path)
        assert (again.inserted, again.rejected_total, again.conflicting_total) == (0, 0, 0)
    assert len(stored(migrated_db)) == 4


def test_bad_rows_are_named_by_line_and_the_rest_load(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        HEADER
        + "SPY,2025-06-10T13:30:00Z,600,601,599,600.5,10\n"  # 2: good
        + "SPY,2025-06-10T13:31:00,600,601,599,600.5,10\n"  # 3: no zone
        + "SPY,2025-06-10T13:32:00Z,600,601,599,abc,10\n"  # 4: not a number
        + "SPY,2025-06-10T13:33:00Z,600,601,602,600.5,10\n"  # 5: low above high
        + ",2025-06-10T13:34:00Z,600,601,599,600.5,10\n"  # 6: no symbol
        + "SPY,1749562200000,600,601,599,600.5,10\n"  # 7: milliseconds
        + "SPY,2025-06-10T13:35:30Z,600,601,599,600.5,10\n"  # 8: not on the minute grid
        + "\n"  # 9: blank, skipped
        + "SPY,2025-06-10T13:36:00Z,600,601,599,600.5,-1\n"  # 10: negative volume
        + "SPY,2025-06-10,600,601,599,600.5,10\n"  # 11: a date is not a minute bar's time
        + "SPY,2025-06-10T13:37:00Z,0,601,0,600.5,10\n"  # 12: a price of 0
        + "SPY,2025-06-10T13:38:00Z,600,601,599,600.5,10\n",  # 13: good
        encoding="utf-8",
    )
    report = run(migrated_db, path)
    assert (report.inserted, report.rejected_total) == (2, 9)
    reasons = {item.line: item.reason for item in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 10, 11, 12]
    assert "has no zone" in reasons[3] and reasons[4] == "close 'abc' is not a number"
    assert reasons[5].startswith("prices out of order") and reasons[6] == "missing symbol"
    assert "milliseconds" in reasons[7] and "grid" in reasons[8] and "volume '-1'" in reasons[10]
    assert "has no zone" in reasons[11] and reasons[12] == "open '0' must be above 0"
    assert sorted(ts for _, _, ts in stored(migrated_db)) == [
        utc(2025, 6, 10, 13, 30),
        utc(2025, 6, 10, 13, 38),
    ]


def test_a_stored_bar_with_other_values_is_conflicting_and_kept(migrated_db: str, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text(HEADER + "SPY,2025-06-10T13:30:00Z,600,601,599,600.5,10\n", encoding="utf-8")
    assert run(migrated_db, first).inserted == 1
    second = tmp_path / "second.csv"
    second.write_text(
        HEADER
        + "SPY,2025-06-10T13:30:00Z,600,601,599,600.75,10\n"  # 2: the stored bar, another close
        + "SPY,2025-06-10T13:31:00Z,600,601,599,600.5,10\n"  # 3: new
        + "SPY,2025-06-10T13:31:00Z,600,601,599,600.5,10\n"  # 4: line 3 again: already present
        + "SPY,2025-06-10T13:31:00Z,600,601,599,600.6,10\n",  # 5: line 3 with another close
        encoding="utf-8",
    )
    report = run(migrated_db, second)
    assert (report.inserted, report.already_present, report.conflicting_total, report.rejected_total) == (
        1,
        1,
        2,
        0,
    )
    assert [item.line for item in report.conflicting] == [2, 5]
    assert report.conflicting[0].reason == (
        "SPY 1m bar at 2025-06-10T13:30:00+00:00 is stored with other values "
        "(close 600.5 stored, 600.75 here); kept the stored one"
    )
    assert stored(migrated_db)[("SPY", "1m", utc(2025, 6, 10, 13, 30))][3] == 600.5
    assert stored(migrated_db)[("SPY", "1m", utc(2025, 6, 10, 13, 31))][3] == 600.5


def test_daily_bars_are_stored_as_their_session_date(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text(
        "symbol,timestamp,open,high,low,close,volume,resolution\n"
        "SPY,2025-06-09,600,605,598,604,1e6,1d\n"
        "SPY,2025-06-10T00:00:00-04:00,604,606,603,605,1e6,1d\n"  # midnight New York: the 10th
        "SPY,2025-06-11T09:00:00+09:00,605,607,604,606,1e6,1d\n"  # written in Tokyo: the 11th
        "SPY,2025-06-12T14:30:00Z,606,608,605,607,1e6,1m\n",  # a minute bar in the same file
        encoding="utf-8",
    )
    report = run(migrated_db, path, resolution=None)
    assert (report.inserted, report.rejected_total) == (4, 0)
    days = sorted(ts for symbol, resolution, ts in stored(migrated_db) if resolution == "1d")
    assert days == [utc(2025, 6, 9), utc(2025, 6, 10), utc(2025, 6, 11)]


def test_a_file_without_a_resolution_is_refused_before_anything_is_stored(
    migrated_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + "SPY,2025-06-10T13:30:00Z,600,601,599,600.5,10\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="resolution is not named"):
        run(migrated_db, path, resolution=None)
    missing_column = tmp_path / "no_close.csv"
    missing_column.write_text(
        "symbol,timestamp,open,high,low\nSPY,2025-06-10T13:30:00Z,1,1,1\n", encoding="utf-8"
    )
    with pytest.raises(
        ImportFileError,
        match="must name the columns 'symbol', 'timestamp', 'open', 'high', 'low' and 'close'",
    ):
        run(migrated_db, missing_column)
    assert stored(migrated_db) == {}


def test_volfefe_import_prices_exits_1_naming_each_bad_row(database_url: str, tmp_path: Path) -> None:
    assert volfefe(database_url, "db", "upgrade").returncode == 0
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "SPY,2025-06-10T13:30:00Z,600,601,599,600.5,10\n", encoding="utf-8")
    result = volfefe(database_url, "import-prices", "--resolution", "1m", str(good))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "inserted 1, already present 0, conflicting 0, rejected 0 (read as CSV, comma-separated, UTF-8)\n"
    )
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        HEADER
        + "SPY,2025-06-10T13:30:00Z,600,601,599,600.25,10\n"
        + "SPY,2025-06-10T13:31:00,600,601,599,600.5,10\n"
        + "SPY,2025-06-10T13:32:00Z,600,601,599,600.5,10\n",
        encoding="utf-8",
    )
    result = volfefe(database_url, "import-prices", "--resolution", "1m", str(mixed))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{mixed}: line 2: conflicting: SPY 1m bar at 2025-06-10T13:30:00+00:00 is stored with other values "
        "(close 600.5 stored, 600.25 here); kept the stored one",
        f"{mixed}: line 3: rejected: timestamp '2025-06-10T13:31:00' has no zone: add its offset "
        "(Z, +00:00, -04:00) or use Unix seconds",
    ]
    assert result.stdout.startswith("inserted 1, already present 0, conflicting 1, rejected 1 (")
    refused = volfefe(database_url, "import-prices", str(good))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"volfefe: error: {good}: the bars' resolution is not named: give --resolution (e.g. 1m, 1d) or a "
        "resolution column\n"
    )
    help_text = volfefe(database_url, "import-prices", "--help").stdout
    assert "timestamp" in help_text and "conflicting" in help_text


def test_the_reaction_read_from_the_database_is_the_one_from_memory(migrated_db: str, tmp_path: Path) -> None:
    """Synthetic minute and daily bars through the CSV importer into the database, then the reaction
    through DatabaseBarSource: the same records as from the bars in memory."""
    calendar = trading_calendar()
    settings = market_settings({})
    bars = list(intraday_bars(calendar, "SPY", date(2025, 3, 3), date(2025, 6, 12), sigma=0.0006, seed=3))
    minute_file, daily_file = tmp_path / "minutes.csv", tmp_path / "days.csv"
    write_bars(minute_file, bars)
    days = daily_bars(calendar, bars)
    write_bars(daily_file, days, daily=True)
    assert run(migrated_db, minute_file).inserted == len(bars)
    assert run(migrated_db, daily_file, resolution="1d").inserted == len(days)

    memory = InMemoryBarSource(calendar)
    memory.add_intraday("SPY", "1m", [(bar.start, bar.close) for bar in bars])
    posts = [
        Post(1, utc(2025, 6, 10, 14, 0, 30), "twitter", ("SPY", "QQQ")),
        Post(2, utc(2025, 6, 7, 15), "twitter", ("SPY",)),  # a Saturday
    ]
    others = OtherPosts.of([(post.content_id, post.published_at) for post in posts])
    with session_factory(migrated_db)() as session:
        source = DatabaseBarSource(session, calendar)
        for post in posts:
            from_db = [r.to_json() for r in post_reactions(post, source, calendar, settings, others)]
            from_memory = [r.to_json() for r in post_reactions(post, memory, calendar, settings, others)]
            assert from_db == from_memory
            assert [r["status"] for r in from_db if r["symbol"] == "SPY"] == [OK, OK, OK]
        # QQQ has no bars: recorded as such, not skipped.
        assert {
            r.status for r in post_reactions(posts[0], source, calendar, settings) if r.symbol == "QQQ"
        } == {"no_prices"}
        # Daily-only data: a symbol whose minute bars are absent reads the daily closes.
        assert source.last_daily_session("SPY") == calendar.session_index(date(2025, 6, 12))
        assert source.last_intraday_end("SPY", "1m") == to_seconds(utc(2025, 6, 12, 20))
