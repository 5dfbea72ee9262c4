"""Loading price bars from CSV or JSON Lines (``volfefe import-prices``): strict, idempotent, bulk.

The file is read as ``volfefe import`` reads posts (``db.importer.read_rows``: UTF-8 checked first,
JSON Lines by suffix, CSV delimiter sniffed, every row with its line number), one chunk at a time, so
memory does not grow with the file. Each chunk is one transaction:

1. its good rows go into a temporary table: PostgreSQL ``COPY ... FROM STDIN (FORMAT BINARY)``, SQLite
   one ``executemany``;
2. ``INSERT INTO price_bars SELECT ... ORDER BY line ON CONFLICT DO NOTHING`` (the first line of a bar
   repeated in the file wins);
3. one join of the temporary table with ``price_bars`` finds the lines whose stored bar has other
   values (conflicting: reported, the stored bar kept) or none at all (removed meanwhile: rejected).

Every row is counted once: inserted, already present, conflicting or rejected (a bad row, with why).
The first ``MAX_LISTED`` rejected and conflicting rows are kept with their line for the message; the
counts are always whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from db.importer import ImportFileError, ImportReport, Rejected, read_rows
from db.models import PriceBar
from db.session import engine_for
from market.bars import DAILY, parse_resolution, resolution_seconds
from market.import_format import EPOCH_MILLISECONDS_FROM, REQUIRED_COLUMNS, SYMBOL_LIMIT

#: rows written per transaction (one COPY or executemany, one INSERT ... SELECT, one comparison).
CHUNK_SIZE = 50_000
#: rejected rows, and conflicting rows, named with their line at most (each; the counts are whole).
MAX_LISTED = 1000
#: the command that messages suggest.
COMMAND = "import-prices"

_PRICES = ("open", "high", "low", "close")
_BAR_COLUMNS = ("symbol", "resolution", "ts", "open", "high", "low", "close", "volume")
_EPOCH = re.compile(r"[0-9]+(\.[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_incoming = Table(
    "price_bars_incoming",
    MetaData(),
    Column("line", Integer, nullable=False),
    Column("symbol", String(SYMBOL_LIMIT), nullable=False),
    Column("resolution", String(8), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    *(Column(name, Float, nullable=False) for name in _PRICES),
    Column("volume", Float),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)
#: PostgreSQL types of the temporary table's columns, in order, for binary COPY.
_COPY_TYPES = ["int4", "varchar", "varchar", "timestamptz", "float8", "float8", "float8", "float8", "float8"]


@dataclass
class PriceImportReport(ImportReport):
    """``inserted`` and ``already_present`` as for posts; ``rejected`` and ``conflicting`` list the first
    MAX_LISTED of each, ``rejected_total`` and ``conflicting_total`` count them all."""

    conflicting: list[Rejected] = field(default_factory=list)
    rejected_total: int = 0
    conflicting_total: int = 0
    #: the span of the chunks that inserted bars: their symbols and first and last bar times.
    symbols: set[str] = field(default_factory=set)
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    def covered(self, rows: list[tuple[Any, ...]]) -> None:
        """Widen the span by these rows (``(line, symbol, resolution, ts, ...)``) of a chunk that inserted."""
        self.symbols.update(row[1] for row in rows)
        times = [row[3] for row in rows]
        low, high = min(times), max(times)
        self.first_ts = low if self.first_ts is None else min(self.first_ts, low)
        self.last_ts = high if self.last_ts is None else max(self.last_ts, high)

    def reject(self, line: int, reason: str) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append(Rejected(line, reason))

    def conflict(self, line: int, reason: str) -> None:
        self.conflicting_total += 1
        if len(self.conflicting) < MAX_LISTED:
            self.conflicting.append(Rejected(line, reason))

    @property
    def ok(self) -> bool:
        return not (self.rejected_total or self.conflicting_total)


# -- one row -----------------------------------------------------------------------------------------


def _number(row: dict[str, Any], name: str, *, positive: bool) -> float | None:
    value = row.get(name)
    kind = type(value)
    if kind is str or kind is float or kind is int:  # the common case, first: millions of rows
        try:
            number = float(value)  # type: ignore[arg-type]
        except (ValueError, OverflowError):
            pass
        else:
            if (0 < number < math.inf) if positive else (0 <= number < math.inf):
                return number
    return _checked_number(value, name, positive=positive)


def _checked_number(value: Any, name: str, *, positive: bool) -> float | None:
    """``value`` as a number, or the ValueError that says why it is not one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if positive:
            raise ValueError(f"missing {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise ValueError(f"{name} {str(value)[:40]!r} must be {'above 0' if positive else 'at least 0'}")
    return number


def _timestamp(value: Any, resolution: str) -> datetime:
    """The bar's start in UTC (a daily bar: its session's date at 00:00 UTC)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("timestamp must be ISO 8601 text or Unix seconds")
    text = str(value).strip()
    if isinstance(value, int | float) or _EPOCH.fullmatch(text):
        seconds = float(text)
        if not math.isfinite(seconds) or seconds >= EPOCH_MILLISECONDS_FROM:
            raise ValueError(f"timestamp {text[:40]!r} is not Unix time in seconds (milliseconds?)")
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    elif resolution == DAILY and _DATE.fullmatch(text):
        try:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"timestamp {text!r} is not a date") from None
    else:
        try:
            moment = datetime.fromisoformat(text)
        except (ValueError, OverflowError):
            raise ValueError(f"timestamp {text[:40]!r} is not ISO 8601 or Unix seconds") from None
        if moment.tzinfo is None:
            raise ValueError(
                f"timestamp {text[:40]!r} has no zone: add its offset (Z, +00:00, -04:00) or use Unix seconds"
            )
    if resolution == DAILY:  # the session: the date as written, in the row's own offset
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.microsecond or (resolution_seconds(resolution) >= 60 and moment.second):
        raise ValueError(f"timestamp {text[:40]!r} is not on the {resolution} bars' grid (whole minutes)")
    return moment


def parse_bar(row: Any, resolution: str | None) -> tuple[Any, ...]:
    """A row's column values in ``_BAR_COLUMNS`` order; ValueError naming what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("a row must be an object with named fields")
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError("missing symbol" if symbol in (None, "") else "symbol must be text")
    symbol = symbol.strip()
    if len(symbol) > SYMBOL_LIMIT or any(character.isspace() for character in symbol):
        raise ValueError(f"symbol {symbol[:40]!r} is longer than {SYMBOL_LIMIT} characters or has spaces")
    named = row.get("resolution")
    if named is not None and str(named).strip():
        resolution = parse_resolution(str(named))
    elif resolution is None:
        raise ValueError("no resolution: give a resolution column or --resolution")
    moment = _timestamp(row.get("timestamp"), resolution)
    opening, high, low, closing = (_number(row, name, positive=True) for name in _PRICES)
    assert opening is not None and high is not None and low is not None and closing is not None
    if not low <= min(opening, closing) <= max(opening, closing) <= high:
        raise ValueError(
            f"prices out of order: low {low:g} <= open {opening:g}, close {closing:g} <= high {high:g} fails"
        )
    return (symbol, resolution, moment, opening, high, low, closing, _number(row, "volume", positive=False))


# -- a chunk -----------------------------------------------------------------------------------------


def _describe(values: tuple[Any, ...]) -> str:
    return f"{values[0]} {values[1]} bar at {values[2].isoformat()}"


class _Chunks:
    """Writes chunks of parsed rows and accounts for each in the report."""

    def __init__(self, connection_source: Engine, report: PriceImportReport) -> None:
        self.engine = connection_source
        self.report = report
        self.dialect = connection_source.dialect.name
        self.rows: list[tuple[Any, ...]] = []  # (line, *_BAR_COLUMNS values)

    def flush(self) -> None:
        if not self.rows:
            return
        with self.engine.begin() as connection:
            connection.execute(CreateTable(_incoming, if_not_exists=True))
            self._load(connection)
            inserted = self._insert(connection)
            differing = connection.execute(self._differing()).all()
            if self.dialect != "postgresql":  # PostgreSQL empties it at commit (ON COMMIT DELETE ROWS)
                connection.execute(delete(_incoming))
        by_line = {row[0]: row[1:] for row in self.rows} if differing else {}
        for found in differing:
            self._settle(found, by_line[found.line])
        self.report.inserted += inserted
        if inserted:
            self.report.covered(self.rows)
        self.report.already_present += len(self.rows) - len(differing) - inserted
        self.rows.clear()

    def _load(self, connection: Connection) -> None:
        if self.dialect == "postgresql":
            driver = connection.connection.driver_connection
            columns = ", ".join(column.name for column in _incoming.columns)
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY {_incoming.name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(_COPY_TYPES)
                for row in self.rows:
                    copy.write_row(row)
        else:
            # The driver's executemany with positional rows; the timestamps formatted by SQLAlchemy's own
            # DateTime type, as every other read and write of price_bars.ts on SQLite has them.
            to_text = _incoming.c.ts.type.dialect_impl(connection.dialect).bind_processor(connection.dialect)
            assert to_text is not None
            columns = ", ".join(column.name for column in _incoming.columns)
            marks = ", ".join("?" for _ in _incoming.columns)
            connection.exec_driver_sql(
                f"INSERT INTO {_incoming.name} ({columns}) VALUES ({marks})",
                [(*row[:3], to_text(row[3]), *row[4:]) for row in self.rows],
            )

    def _insert(self, connection: Connection) -> int:
        """Insert the incoming bars not stored yet; returns how many were."""
        bars = PriceBar.__table__
        source = select(*(_incoming.c[name] for name in _BAR_COLUMNS)).order_by(_incoming.c.line)
        if self.dialect == "postgresql":
            # Counted by RETURNING in a CTE: psycopg reports no rowcount for this INSERT ... SELECT.
            inserted = (
                postgresql.insert(bars)
                .from_select(_BAR_COLUMNS, source)
                .on_conflict_do_nothing()
                .returning(bars.c.ts)
                .cte("inserted")
            )
            return int(connection.execute(select(func.count()).select_from(inserted)).scalar_one())
        # WHERE true: SQLite would read ON CONFLICT as a join's ON after a bare SELECT ... FROM.
        statement = (
            sqlite.insert(bars).from_select(_BAR_COLUMNS, source.where(true())).on_conflict_do_nothing()
        )
        return connection.execute(statement).rowcount

    def _differing(self) -> Any:
        bars = PriceBar.__table__
        incoming = _incoming.c
        joined = _incoming.outerjoin(
            bars,
            and_(
                bars.c.symbol == incoming.symbol,
                bars.c.resolution == incoming.resolution,
                bars.c.ts == incoming.ts,
            ),
        )
        differs = or_(
            bars.c.symbol.is_(None),
            *(incoming[name] != bars.c[name] for name in _PRICES),
            incoming.volume.is_distinct_from(bars.c.volume),
        )
        stored = [bars.c[name].label(f"stored_{name}") for name in (*_PRICES, "volume")]
        return (
            select(incoming.line, bars.c.symbol.label("stored_symbol"), *stored)
            .select_from(joined)
            .where(differs)
            .order_by(incoming.line)
        )

    def _settle(self, found: Any, values: tuple[Any, ...]) -> None:
        if found.stored_symbol is None:
            self.report.reject(
                found.line, f"{_describe(values)} was neither inserted nor found; import the file again"
            )
            return
        here = dict(zip((*_PRICES, "volume"), values[3:], strict=True))
        differences = [
            f"{name} {getattr(found, f'stored_{name}')!r} stored, {here[name]!r} here"
            for name in (*_PRICES, "volume")
            if getattr(found, f"stored_{name}") != here[name]
        ]
        self.report.conflict(
            found.line,
            f"{_describe(values)} is stored with other values ({'; '.join(differences)}); kept the stored one",
        )


# -- the file ----------------------------------------------------------------------------------------


def import_prices(
    engine: Engine,
    path: Path,
    resolution: str | None = None,
    *,
    encoding: str | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> PriceImportReport:
    """Insert the bars of ``path`` that are not stored yet; commits every ``chunk_size`` rows.

    ``resolution`` applies to rows without a ``resolution`` field; without either the file is refused
    (ImportFileError) before anything is written.
    """
    resolution = None if resolution is None else _checked_resolution(resolution)
    report = PriceImportReport()
    chunks = _Chunks(engine, report)
    rows = read_rows(path, encoding, report, required_columns=REQUIRED_COLUMNS, command=COMMAND)
    for number, (line, row) in enumerate(rows):
        if number == 0 and resolution is None and not (isinstance(row, dict) and row.get("resolution")):
            raise ImportFileError(
                f"{path}: the bars' resolution is not named: give --resolution (e.g. 1m, 1d) or a resolution column"
            )
        try:
            if isinstance(row, ValueError):
                raise row
            chunks.rows.append((line, *parse_bar(row, resolution)))
        except ValueError as error:
            report.reject(line, str(error))
            continue
        if len(chunks.rows) >= chunk_size:
            chunks.flush()
    chunks.flush()
    report.rejected.sort(key=lambda rejected: rejected.line)
    return report


def _checked_resolution(label: str) -> str:
    try:
        return parse_resolution(label)
    except ValueError as error:
        raise ImportFileError(f"--resolution: {error}") from None


def import_prices_file(
    database_url: str, path: Path, resolution: str | None = None, *, encoding: str | None = None
) -> PriceImportReport:
    """``import_prices`` on the database at ``database_url``."""
    return import_prices(engine_for(database_url), path, resolution, encoding=encoding)


def listed_problems(report: PriceImportReport) -> Iterable[tuple[int, str, str]]:
    """(line, "rejected" or "conflicting", reason) of the rows named, in line order."""
    problems = [(item.line, "rejected", item.reason) for item in report.rejected]
    problems += [(item.line, "conflicting", item.reason) for item in report.conflicting]
    return sorted(problems)
