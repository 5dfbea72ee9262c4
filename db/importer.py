"""Loading posts from CSV or JSON Lines: idempotent, and a bad row never stops the rest."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Content
from db.session import session_factory

#: source recorded for rows that name none.
DEFAULT_SOURCE = "import"
#: rows written per transaction.
CHUNK_SIZE = 1000
_LIMITS = {"external_id": 255, "source": 64, "author": 255}
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}


class ImportFileError(ValueError):
    """The file as a whole cannot be read (missing, wrong format, no text column)."""


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    inserted: int = 0
    already_present: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def storable_text(value: str) -> str:
    """``value`` as every database can store it: NUL bytes dropped, unpaired surrogates replaced."""
    return value.replace("\x00", "").encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _optional_text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be text")
    text = storable_text(str(value)).strip()
    limit = _LIMITS.get(name)
    if limit and len(text) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    return text


def _published_at(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):  # NaN, infinities, out-of-range years
            raise ValueError(f"published_at {value!r} is not a valid timestamp") from None
    try:
        moment = datetime.fromisoformat(str(value).strip())
        # In UTC: SQLite keeps no offset, it would store another zone's wall-clock time as UTC.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset that leaves the year range
        raise ValueError(f"published_at {str(value)[:40]!r} is not an ISO 8601 date") from None


def parse_post(row: dict[str, Any]) -> dict[str, Any]:
    """Validate one row into Content column values; raise ValueError naming what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("a row must be an object with named fields")
    text = row.get("text")
    if text is None:
        raise ValueError("missing text")
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    external_id = _optional_text(row, "external_id")
    if external_id is None:
        raise ValueError("missing external_id")
    return {
        "source": _optional_text(row, "source") or DEFAULT_SOURCE,
        "external_id": external_id,
        "author": _optional_text(row, "author"),
        "text": storable_text(text),
        "url": _optional_text(row, "url"),
        "published_at": _published_at(row.get("published_at")),
    }


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        # csv.reader, not DictReader: DictReader skips blank lines silently, which would shift the
        # line numbers reported for every later row.
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or "text" not in header:
            raise ImportFileError(f"{path}: the CSV header must name a 'text' column")
        line = reader.line_num
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields:  # a blank line
                continue
            if len(fields) > len(header):
                yield start, ValueError(f"{len(fields) - len(header)} more fields than the header names")
            else:
                yield start, dict(itertools.zip_longest(header, fields))


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, ValueError(f"not valid JSON ({error.msg})")


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, raw row or the ValueError that makes it unreadable) for each row of ``path``."""
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    if path.suffix.lower() in _JSON_SUFFIXES:
        return _json_rows(path)
    return _csv_rows(path)


def import_posts(session: Session, path: Path, chunk_size: int = CHUNK_SIZE) -> ImportReport:
    """Insert the posts of ``path`` that are not there yet (same source and external_id).

    Commits every ``chunk_size`` rows; malformed rows are reported with their line number.
    """
    report = ImportReport()
    insert = _INSERTS[session.get_bind().dialect.name]
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        statement = (
            insert(Content)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(Content.id)
        )
        inserted = len(session.execute(statement, chunk).all())
        session.commit()
        report.inserted += inserted
        report.already_present += len(chunk) - inserted
        chunk.clear()

    for line, row in read_rows(path):
        try:
            if isinstance(row, ValueError):
                raise row
            chunk.append(parse_post(row))
        except ValueError as error:
            report.rejected.append(Rejected(line, str(error)))
            continue
        if len(chunk) >= chunk_size:
            flush()
    if chunk:
        flush()
    return report


def import_file(database_url: str, path: Path) -> ImportReport:
    """``import_posts`` in a session of its own (it commits chunk by chunk, so not inside a transaction)."""
    with session_factory(database_url)() as session:
        return import_posts(session, path)
