"""Loading posts from CSV or JSON Lines: strict about the file, idempotent, a bad row never stops the rest.

- **Encoding**: UTF-8, with or without a byte order mark. Any other file is refused before a row is
  read, with the first byte that is not UTF-8, the encoding it looks like (charset-normalizer's guess)
  and how to convert it; ``encoding=`` reads it as the encoding named instead.
- **Format**: JSON Lines for ``.jsonl``, ``.ndjson`` and ``.json``; CSV otherwise, its delimiter
  (comma, semicolon or tab) sniffed; CRLF line endings are read as LF.
- **Rows**: a row without ``text`` or ``external_id``, or with a bad value, is rejected with its line
  number; the rest load.
- **Duplicates** (same ``source`` and ``external_id``): the first row stays. A later row with the same
  text counts as already present; one with a different text is rejected, naming where the first is
  (a line of the file, or the database).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.dialect_insert import dialect_name, insert_for
from db.import_format import DEFAULT_SOURCE, DELIMITERS, FIELD_LIMITS, JSON_SUFFIXES, REQUIRED_COLUMNS
from db.models import Content
from db.session import session_factory
from errors import VolfefeError

#: rows written per transaction.
CHUNK_SIZE = 1000
#: characters a CSV field may hold (the csv module's own limit, 131,072, would stop at a long post).
CSV_FIELD_LIMIT = 64 * 1024 * 1024
#: bytes read at a time while checking the encoding.
_READ_BYTES = 1 << 20
#: bytes around the first non-UTF-8 byte that charset-normalizer looks at to name the encoding.
_GUESS_BYTES = 1 << 19
#: characters of the file that the CSV sniffer looks at.
_SNIFF_CHARS = 1 << 16
_UTF8_WITH_OPTIONAL_BOM = "utf-8-sig"


class ImportFileError(VolfefeError):
    """The file as a whole cannot be read (missing, not UTF-8, wrong format, no text column)."""


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    inserted: int = 0
    already_present: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    #: how the file was read, e.g. "CSV, semicolon-separated, UTF-8".
    read_as: str = ""


def storable_text(value: str) -> str:
    """``value`` as every database can store it: NUL bytes dropped, unpaired surrogates replaced."""
    return value.replace("\x00", "").encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# -- the file: encoding and format -----------------------------------------------------------------


def file_encoding(path: Path, encoding: str | None = None, command: str = "import") -> str:
    """The codec that reads ``path``: UTF-8 (a byte order mark skipped), or ``encoding`` once checked.

    Raises ImportFileError naming the first byte that does not decode, and for a file that is not
    UTF-8, the encoding it looks like and how to convert it (``volfefe COMMAND --encoding ...``).
    """
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise ImportFileError(
                f"{path}: unknown encoding {encoding!r} (e.g. latin-1, cp1252, utf-16)"
            ) from None
        codec = _UTF8_WITH_OPTIONAL_BOM if codec == "utf-8" else codec
        undecodable = _first_undecodable(path, codec)
        if undecodable is not None:
            offset, line, byte = undecodable
            raise ImportFileError(
                f"{path}: not {encoding}: byte 0x{byte:02x} at offset {offset} (line {line}) does not decode"
            )
        return codec
    undecodable = _first_undecodable(path, "utf-8")
    if undecodable is None:
        return _UTF8_WITH_OPTIONAL_BOM
    raise ImportFileError(_not_utf8_message(path, *undecodable, command=command))


def _first_undecodable(path: Path, codec: str) -> tuple[int, int, int] | None:
    """(byte offset, line number, byte value) of the first byte ``codec`` cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    offset = newlines = 0
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_READ_BYTES)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                # error.object is the decoder's buffered bytes (an unfinished sequence) then the chunk.
                start = offset + len(chunk) - len(error.object) + error.start
                line = newlines + error.object[: error.start].count(b"\n") + 1
                return start, line, error.object[error.start]
            if not chunk:
                return None
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def _not_utf8_message(path: Path, offset: int, line: int, byte: int, command: str = "import") -> str:
    where = f"{path}: not UTF-8: byte 0x{byte:02x} at offset {offset} (line {line})"
    converted = path.with_name(f"{path.stem}.utf8{path.suffix}")
    guesses = _guess_encodings(path, offset)
    if not guesses:
        return (
            f"{where}; convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8 {path} > {converted}`) or "
            f"name its encoding: `volfefe {command} --encoding NAME {path}`"
        )
    codec, sample = guesses[0]
    return (
        f"{where}; charset-normalizer guesses {', '.join(name for name, _ in guesses)} (line {line} reads "
        f"{sample!r} in {codec}); convert it, e.g. `iconv -f {codec.upper()} -t utf-8 {path} > {converted}`, "
        f"or read it as it is: `volfefe {command} --encoding {codec} {path}`"
    )


def _guess_encodings(path: Path, offset: int) -> list[tuple[str, str]]:
    """charset-normalizer's best guesses (at most three) for the bytes around ``offset``, each with how
    the line at ``offset`` reads in it. Single-byte encodings are hard to tell apart: the person decides.
    """
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # a declared dependency; without it the message gives the offset only
        return []
    start = max(0, offset - _GUESS_BYTES // 2)
    with path.open("rb") as handle:
        handle.seek(start)
        window = handle.read(_GUESS_BYTES)
    line_start = window.rfind(b"\n", 0, offset - start) + 1
    line_end = window.find(b"\n", offset - start)
    line = window[line_start : line_end if line_end >= 0 else len(window)]
    codecs_found = dict.fromkeys(codecs.lookup(match.encoding).name for match in from_bytes(window))
    codecs_found.pop("utf-8", None)
    return [(codec, line.decode(codec, "replace").strip()[:80]) for codec in list(codecs_found)[:3]]


def _describe_encoding(path: Path, requested: str | None) -> str:
    if requested:
        return f"{requested} (as asked)"
    with path.open("rb") as handle:
        return "UTF-8 with a byte order mark" if handle.read(3) == codecs.BOM_UTF8 else "UTF-8"


# -- rows ------------------------------------------------------------------------------------------


def _optional_text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be text")
    text = storable_text(str(value)).strip()
    limit = FIELD_LIMITS.get(name)
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


def _header_columns(header_line: str, delimiter: str) -> list[str]:
    return [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter), [])]


def _csv_delimiter(path: Path, sample: str, required: tuple[str, ...] = REQUIRED_COLUMNS) -> str:
    """The delimiter whose header names the required columns: the sniffed one first, then the others."""
    header_line = sample.split("\n", 1)[0].rstrip("\r")
    if not header_line.strip():
        raise ImportFileError(
            f"{path}: the file is empty" if not sample.strip() else f"{path}: line 1 is empty"
        )
    try:
        sniffed: str | None = (
            csv.Sniffer().sniff(sample[: sample.rfind("\n") + 1] or sample, "".join(DELIMITERS)).delimiter
        )
    except csv.Error:  # too little text to tell
        sniffed = None
    for delimiter in [*([sniffed] if sniffed else []), *(d for d in DELIMITERS if d != sniffed)]:
        if set(required) <= set(_header_columns(header_line, delimiter)):
            return delimiter
    found = sniffed or ","
    columns = ", ".join(repr(name) for name in _header_columns(header_line, found))
    raise ImportFileError(
        f"{path}: the CSV header must name the columns {_and_list(required)}; read as "
        f"{DELIMITERS[found]}-separated (also tried comma, semicolon and tab) it names {columns}"
    )


def _and_list(names: tuple[str, ...]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _csv_rows(
    path: Path, encoding: str, report: ImportReport, required: tuple[str, ...] = REQUIRED_COLUMNS
) -> Iterator[tuple[int, Any]]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with path.open(newline="", encoding=encoding) as handle:
        delimiter = _csv_delimiter(path, handle.read(_SNIFF_CHARS), required)
        handle.seek(0)
        report.read_as = f"CSV, {DELIMITERS[delimiter]}-separated"
        # csv.reader, not DictReader: DictReader skips blank lines silently, which would shift the
        # line numbers reported for every later row.
        reader = csv.reader(handle, delimiter=delimiter)
        header = [name.strip() for name in next(reader)]
        line = reader.line_num
        try:
            for fields in reader:
                start, line = line + 1, reader.line_num
                if not fields:  # a blank line
                    continue
                if len(fields) > len(header):
                    yield start, ValueError(f"{len(fields) - len(header)} more fields than the header names")
                else:
                    # A quoted field keeps the file's line endings: read CRLF (and CR) as LF.
                    values = (value.replace("\r\n", "\n").replace("\r", "\n") for value in fields)
                    yield start, dict(itertools.zip_longest(header, values))
        except csv.Error as error:  # e.g. a field beyond CSV_FIELD_LIMIT: the rest cannot be read
            raise ImportFileError(
                f"{path}: line {reader.line_num}: {error} (the rows before it are loaded)"
            ) from None


def _json_rows(path: Path, encoding: str, report: ImportReport) -> Iterator[tuple[int, Any]]:
    report.read_as = "JSON Lines"
    with path.open(encoding=encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if number == 1 and line.lstrip().startswith("["):
                raise ImportFileError(
                    f"{path}: a JSON array, not JSON Lines (one object per line); convert it with "
                    f"`jq -c '.[]' {path} > {path.with_suffix('.jsonl')}`"
                )
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, ValueError(f"not valid JSON ({error.msg})")


def read_rows(
    path: Path,
    encoding: str | None = None,
    report: ImportReport | None = None,
    *,
    required_columns: tuple[str, ...] = REQUIRED_COLUMNS,
    command: str = "import",
) -> Iterator[tuple[int, Any]]:
    """(line number, raw row or the ValueError that makes it unreadable) for each row of ``path``.

    The encoding is checked before the first row (ImportFileError); ``report.read_as`` is filled in.
    A CSV header must name ``required_columns``; ``command`` is the ``volfefe`` command that messages
    suggest (``--encoding``).
    """
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    report = report if report is not None else ImportReport()
    codec = file_encoding(path, encoding, command)
    iterator = (
        _json_rows(path, codec, report)
        if path.suffix.lower() in JSON_SUFFIXES
        else _csv_rows(path, codec, report, required_columns)
    )
    first = next(iterator, None)  # reads the header: a bad file fails here, before anything is written
    report.read_as += f", {_describe_encoding(path, encoding)}"
    return itertools.chain([first] if first is not None else [], iterator)


# -- loading ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _FirstRow:
    """The first row of a (source, external_id) in the file, and what became of it."""

    line: int
    digest: bytes
    #: None until its chunk is written; then STORED or the reason it was rejected.
    outcome: str | None = None
    #: later lines with the same text, waiting for the outcome.
    repeats: list[int] = field(default_factory=list)


_STORED = "stored"


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _describe_key(values: dict[str, Any]) -> str:
    return f"external_id {values['external_id']!r} (source {values['source']!r})"


class _Loader:
    """Writes parsed rows chunk by chunk and accounts for every line in the report.

    Remembers each (source, external_id) of the file with a 16-byte digest of its text, to tell a
    repeat from a different post under the same id.
    """

    def __init__(self, session: Session, report: ImportReport) -> None:
        self.session = session
        self.report = report
        self.insert = insert_for(dialect_name(session))
        self.first_rows: dict[tuple[str, str], _FirstRow] = {}
        self.chunk: list[tuple[int, dict[str, Any]]] = []

    def add(self, line: int, values: dict[str, Any]) -> None:
        """Queue a row for writing, or settle it now when the file already had its key."""
        key = (values["source"], values["external_id"])
        first = self.first_rows.get(key)
        digest = _digest(values["text"])
        if first is None:
            self.first_rows[key] = _FirstRow(line, digest)
            self.chunk.append((line, values))
        elif first.digest != digest:
            self.report.rejected.append(
                Rejected(
                    line,
                    f"{_describe_key(values)} already imported with a different text at line "
                    f"{first.line}; kept the first",
                )
            )
        elif first.outcome is None:
            first.repeats.append(line)
        else:
            self._settle(first.outcome, line)

    def flush(self) -> None:
        """Write the queued rows in one transaction; compare the ones already stored."""
        if not self.chunk:
            return
        statement = (
            self.insert(Content)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(Content.source, Content.external_id)
        )
        inserted = {
            tuple(row) for row in self.session.execute(statement, [values for _, values in self.chunk])
        }
        existing = [
            values for _, values in self.chunk if (values["source"], values["external_id"]) not in inserted
        ]
        stored = self._stored_texts(existing)
        self.session.commit()
        for line, values in self.chunk:
            key = (values["source"], values["external_id"])
            if key in inserted:
                self.report.inserted += 1
                outcome = _STORED
            elif stored.get(key) == values["text"]:
                self.report.already_present += 1
                outcome = _STORED
            elif key in stored:
                outcome = (
                    f"{_describe_key(values)} already imported with a different text in the database; "
                    "kept the stored one"
                )
                self.report.rejected.append(Rejected(line, outcome))
            else:  # removed by someone else between the insert and this read
                outcome = f"{_describe_key(values)} was neither inserted nor found; import the file again"
                self.report.rejected.append(Rejected(line, outcome))
            first = self.first_rows[key]
            first.outcome = outcome
            for repeat in first.repeats:
                self._settle(outcome, repeat)
            first.repeats.clear()
        self.chunk.clear()

    def _stored_texts(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
        if not rows:
            return {}
        found = self.session.execute(
            select(Content.source, Content.external_id, Content.text).where(
                Content.external_id.in_({values["external_id"] for values in rows}),
                Content.source.in_({values["source"] for values in rows}),
            )
        )
        return {(source, external_id): text for source, external_id, text in found}

    def _settle(self, outcome: str, line: int) -> None:
        """A repeat of a row with the same text: present if the first was stored, else rejected alike."""
        if outcome == _STORED:
            self.report.already_present += 1
        else:
            self.report.rejected.append(Rejected(line, outcome))


def import_posts(
    session: Session, path: Path, chunk_size: int = CHUNK_SIZE, *, encoding: str | None = None
) -> ImportReport:
    """Insert the posts of ``path`` that are not there yet (same source and external_id).

    ``encoding`` names the file's encoding when it is not UTF-8. Commits every ``chunk_size`` rows;
    every row is counted once: inserted, already present, or rejected with its line number.
    """
    report = ImportReport()
    loader = _Loader(session, report)
    for line, row in read_rows(path, encoding, report):
        try:
            if isinstance(row, ValueError):
                raise row
            loader.add(line, parse_post(row))
        except ValueError as error:
            report.rejected.append(Rejected(line, str(error)))
            continue
        if len(loader.chunk) >= chunk_size:
            loader.flush()
    loader.flush()
    report.rejected.sort(key=lambda rejected: rejected.line)
    return report


def import_file(database_url: str, path: Path, *, encoding: str | None = None) -> ImportReport:
    """``import_posts`` in a session of its own (it commits chunk by chunk, so not inside a transaction)."""
    with session_factory(database_url)() as session:
        return import_posts(session, path, encoding=encoding)
