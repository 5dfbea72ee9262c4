"""db.importer on SQLite and a real PostgreSQL server: idempotent, and bad rows never stop the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from db.importer import DEFAULT_SOURCE, ImportFileError, ImportReport, Rejected, import_posts
from db.models import Content
from db.session import session_factory, session_scope


def run_import(url: str, path: Path, chunk_size: int | None = None) -> ImportReport:
    with session_factory(url)() as session:
        if chunk_size is None:
            return import_posts(session, path)
        return import_posts(session, path, chunk_size=chunk_size)


def stored(url: str) -> dict[str, Content]:
    """Every content, by external_id."""
    with session_scope(url) as session:
        return {content.external_id: content for content in session.scalars(select(Content))}


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes (stored in UTC); PostgreSQL returns aware ones."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


GOOD_CSV = (
    "external_id,source,author,text,url,published_at\n"
    "1,twitter,@trader,Stocks rally on strong earnings,https://x.example/1,2024-03-01T10:00:00Z\n"
    "2,,,Shares fall after weak guidance,,\n"
    '3,news,Reuters,"Fed cuts rates, markets cheer",,2024-03-01T12:30:00+02:00\n'
)


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "posts.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")
    return path


def test_csv_import(migrated_db: str, good_csv: Path) -> None:
    report = run_import(migrated_db, good_csv)
    assert (report.inserted, report.already_present, report.rejected) == (3, 0, [])
    rows = stored(migrated_db)
    assert set(rows) == {"1", "2", "3"}
    first = rows["1"]
    assert (first.source, first.author, first.text, first.url) == (
        "twitter",
        "@trader",
        "Stocks rally on strong earnings",
        "https://x.example/1",
    )
    assert as_utc(first.published_at) == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert first.classified is False
    # Empty optional fields: default source, no author, url or date.
    second = rows["2"]
    assert (second.source, second.author, second.url, second.published_at) == (
        DEFAULT_SOURCE,
        None,
        None,
        None,
    )
    # A quoted comma stays in the text; an offset is converted, not dropped.
    assert rows["3"].text == "Fed cuts rates, markets cheer"
    assert as_utc(rows["3"].published_at) == datetime(2024, 3, 1, 10, 30, tzinfo=UTC)


def test_json_lines_import(migrated_db: str, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"external_id": "a1", "text": "Oil prices surge", "source": "rss", "published_at": "2024-01-02"},
            {"external_id": 42, "text": "Numeric id", "published_at": 1_700_000_000},
            {"external_id": "a3", "text": "Extra fields are ignored", "likes": 7, "author": None},
        ],
    )
    report = run_import(migrated_db, path)
    assert (report.inserted, report.already_present, report.rejected) == (3, 0, [])
    rows = stored(migrated_db)
    assert rows["a1"].source == "rss"
    assert as_utc(rows["a1"].published_at) == datetime(2024, 1, 2, tzinfo=UTC)
    assert rows["42"].source == DEFAULT_SOURCE
    assert as_utc(rows["42"].published_at) == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert rows["a3"].author is None
    assert rows["a3"].text == "Extra fields are ignored"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_importing_the_same_file_twice_inserts_nothing_the_second_time(
    migrated_db: str, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"posts{suffix}"
    if suffix == ".csv":
        path.write_text("external_id,text\n1,one\n2,two\n3,\n4,four\n", encoding="utf-8")
    else:
        write_jsonl(
            path, [{"external_id": str(i), "text": f"post {i}"} for i in range(1, 5)] + [{"text": "x"}]
        )
    first = run_import(migrated_db, path)
    assert (first.inserted, first.already_present) == (4, 0)
    second = run_import(migrated_db, path)
    assert (second.inserted, second.already_present) == (0, 4)
    # Rejections are reported again, the same way.
    assert second.rejected == first.rejected
    assert len(stored(migrated_db)) == 4


def test_overlapping_files_and_duplicates_within_a_file(migrated_db: str, tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [{"external_id": str(i), "text": f"v1 {i}"} for i in range(5)])
    second = write_jsonl(
        tmp_path / "b.jsonl",
        [{"external_id": str(i), "text": f"v2 {i}"} for i in range(3, 8)]
        + [
            {"external_id": "7", "text": "again"},
            {"external_id": "7", "text": "and again", "source": "other"},
        ],
    )
    assert run_import(migrated_db, first, chunk_size=2).inserted == 5
    report = run_import(migrated_db, second, chunk_size=3)
    # 5, 6, 7 and 7@other are new; 3, 4 and the second 7 were there.
    assert (report.inserted, report.already_present, report.rejected) == (4, 3, [])
    rows = stored(migrated_db)
    assert len(rows) == 8  # "7" is listed once per source: keyed by external_id here
    with session_scope(migrated_db) as session:
        assert len(list(session.scalars(select(Content)))) == 9
    # The first import's text wins: nothing is overwritten.
    assert rows["3"].text == "v1 3"


def test_small_chunks_commit_as_they_go(migrated_db: str, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl", [{"external_id": str(i), "text": f"p{i}"} for i in range(11)]
    )
    report = run_import(migrated_db, path, chunk_size=4)
    assert (report.inserted, report.already_present) == (11, 0)
    assert {row.text for row in stored(migrated_db).values()} == {f"p{i}" for i in range(11)}


# -- malformed rows ------------------------------------------------------------------------------


def test_malformed_csv_rows_are_reported_with_their_line_numbers(migrated_db: str, tmp_path: Path) -> None:
    lines = [
        "external_id,text,published_at",  # 1
        "1,first,2024-01-01",  # 2
        "2",  # 3: too few fields, no text
        ",no id here,",  # 4
        "4,bad date,yesterday",  # 5
        '5,"a text over',  # 6: a quoted field over three lines
        "three",  # 7
        'lines",2024-01-02',  # 8
        "6,too,many,fields",  # 9
        "",  # 10: blank
        ",no id after a blank line,",  # 11
        "8,,not a date either",  # 12
        "9,last,",  # 13
    ]
    path = tmp_path / "posts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_import(migrated_db, path)
    assert [rejected.line for rejected in report.rejected] == [3, 4, 5, 9, 11, 12]
    reasons = {rejected.line: rejected.reason for rejected in report.rejected}
    assert report.rejected[:2] == [Rejected(3, "missing text"), Rejected(4, "missing external_id")]
    assert "published_at" in reasons[5] and "yesterday" in reasons[5]
    assert "more fields than the header" in reasons[9]
    assert reasons[11] == "missing external_id"
    assert "published_at" in reasons[12]
    assert (report.inserted, report.already_present) == (3, 0)
    rows = stored(migrated_db)
    assert set(rows) == {"1", "5", "9"}
    assert rows["5"].text == "a text over\nthree\nlines"


def test_malformed_json_lines_are_reported_with_their_line_numbers(migrated_db: str, tmp_path: Path) -> None:
    lines = [
        json.dumps({"external_id": "1", "text": "fine"}),  # 1
        json.dumps({"external_id": "2"}),  # 2: no text
        json.dumps({"text": "no id"}),  # 3
        "",  # 4: blank lines are skipped, still counted
        "{not json",  # 5
        json.dumps({"external_id": "6", "text": "bad date", "published_at": "31/12/2024"}),  # 6
        json.dumps(["a", "list"]),  # 7
        json.dumps({"external_id": "8", "text": 123}),  # 8
        json.dumps({"external_id": "9", "text": "far future", "published_at": 1e20}),  # 9
        json.dumps({"external_id": "x" * 300, "text": "id too long"}),  # 10
        json.dumps({"external_id": "11", "text": "after the bad ones"}),  # 11
        json.dumps({"external_id": "12", "text": "nested date", "published_at": {"y": 2024}}),  # 12
        json.dumps({"external_id": "   ", "text": "blank id"}),  # 13
    ]
    path = tmp_path / "posts.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_import(migrated_db, path)
    reasons = {rejected.line: rejected.reason for rejected in report.rejected}
    assert sorted(reasons) == [2, 3, 5, 6, 7, 8, 9, 10, 12, 13]
    assert reasons[2] == "missing text"
    assert reasons[3] == "missing external_id"
    assert reasons[5].startswith("not valid JSON")
    assert "published_at" in reasons[6]
    assert "object" in reasons[7]
    assert "text must be a string" in reasons[8]
    assert "published_at" in reasons[9]
    assert "external_id" in reasons[10] and "255" in reasons[10]
    assert reasons[13] == "missing external_id"
    assert (report.inserted, report.already_present) == (2, 0)
    assert set(stored(migrated_db)) == {"1", "11"}


def test_whole_file_errors(migrated_db: str, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="no such file"):
        run_import(migrated_db, tmp_path / "missing.csv")
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("external_id,body\n1,hello\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="'text' column"):
        run_import(migrated_db, no_text)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ImportFileError):
        run_import(migrated_db, empty)
    assert stored(migrated_db) == {}


# -- text as stored ------------------------------------------------------------------------------


def test_nul_bytes_and_unpaired_surrogates_are_stored_sanitized(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    # json.dumps escapes them as \u0000 and \ud800: valid JSON that decodes to unstorable text.
    write_jsonl(
        path,
        [
            {"external_id": "nul", "text": "Oil\x00 up\x00", "author": "a\x00b"},
            {"external_id": "lone", "text": "half \ud800 a pair \udfff end"},
            {"external_id": "pair", "text": "rocket \U0001f680 stays"},
            {"external_id": "id\x00x", "text": "NUL in the id"},
        ],
    )
    report = run_import(migrated_db, path)
    assert (report.inserted, report.rejected) == (4, [])
    rows = stored(migrated_db)
    assert rows["nul"].text == "Oil up"
    assert rows["nul"].author == "ab"
    assert rows["lone"].text == "half \ufffd a pair \ufffd end"
    assert rows["pair"].text == "rocket 🚀 stays"
    assert rows["idx"].text == "NUL in the id"
    # Importing again finds them all (the sanitized ids are the keys).
    assert run_import(migrated_db, path).already_present == 4


def test_csv_with_nul_bytes_and_invalid_utf8(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(
        b"\xef\xbb\xbfexternal_id,text\n"  # a UTF-8 byte order mark
        b"1,nul\x00byte\n"
        b"2,bad \xed\xa0\x80 surrogate bytes\n"
        b"3,latin-1 caf\xe9\n"
    )
    report = run_import(migrated_db, path)
    assert (report.inserted, report.rejected) == (3, [])
    rows = stored(migrated_db)
    assert rows["1"].text == "nulbyte"
    assert "\ufffd" in rows["2"].text and rows["2"].text.startswith("bad ")
    assert rows["3"].text == "latin-1 caf\ufffd"


def test_html_markup_is_kept_in_the_stored_text(migrated_db: str, tmp_path: Path) -> None:
    html = "<p>Stocks <b>rally</b> &amp; bonds</p><script>x()</script> https://x.example"
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "h", "text": html}])
    run_import(migrated_db, path)
    assert stored(migrated_db)["h"].text == html


def test_text_keeps_its_whitespace_and_may_be_empty(migrated_db: str, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [{"external_id": "ws", "text": "  two\n\nparagraphs  "}, {"external_id": "empty", "text": ""}],
    )
    report = run_import(migrated_db, path)
    assert report.inserted == 2
    rows = stored(migrated_db)
    assert rows["ws"].text == "  two\n\nparagraphs  "
    # Empty posts are stored; the classify job skips them (no_text_to_classify).
    assert rows["empty"].text == ""


def test_import_file_commits_chunk_by_chunk_past_the_first_thousand_rows(
    migrated_db: str, tmp_path: Path
) -> None:
    """Regression: import_posts commits every CHUNK_SIZE rows, which a begin() block forbids."""
    from db.importer import CHUNK_SIZE, import_file

    path = tmp_path / "many.csv"
    rows = ["external_id,text", *(f"n{i},headline number {i}" for i in range(CHUNK_SIZE * 2 + 388))]
    path.write_text("\n".join(rows) + "\n")
    first = import_file(migrated_db, path)
    again = import_file(migrated_db, path)
    assert (first.inserted, first.already_present, first.rejected) == (CHUNK_SIZE * 2 + 388, 0, [])
    assert (again.inserted, again.already_present) == (0, CHUNK_SIZE * 2 + 388)
