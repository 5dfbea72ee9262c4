"""db.importer and ``volfefe import`` on SQLite and a real PostgreSQL server: strict about the file,
idempotent, and bad rows never stop the rest."""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from db.importer import DEFAULT_SOURCE, ImportFileError, ImportReport, Rejected, import_file, import_posts
from db.models import Content
from db.session import session_factory, session_scope
from model.visible_text import read_post


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
    assert first.skip_reason is None  # nor any classification: tests/test_store_and_queries.py
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


def test_overlapping_files(migrated_db: str, tmp_path: Path) -> None:
    first = write_jsonl(
        tmp_path / "a.jsonl", [{"external_id": str(i), "text": f"post {i}"} for i in range(5)]
    )
    second = write_jsonl(
        tmp_path / "b.jsonl",
        [{"external_id": str(i), "text": f"post {i}"} for i in range(3, 8)]
        + [{"external_id": "7", "text": "post 7", "source": "other"}],
    )
    assert run_import(migrated_db, first, chunk_size=2).inserted == 5
    report = run_import(migrated_db, second, chunk_size=3)
    # 5, 6, 7 and 7@other are new; 3 and 4 were there with the same text.
    assert (report.inserted, report.already_present, report.rejected) == (4, 2, [])
    with session_scope(migrated_db) as session:
        assert len(list(session.scalars(select(Content)))) == 9


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
    with pytest.raises(ImportFileError, match="must name the columns 'text' and 'external_id'"):
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


def test_csv_with_nul_bytes(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(b"external_id,text\n1,nul\x00byte\n2,caf\xc3\xa9\n")
    report = run_import(migrated_db, path)
    assert (report.inserted, report.rejected) == (2, [])
    rows = stored(migrated_db)
    assert rows["1"].text == "nulbyte"
    assert rows["2"].text == "café"


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


# -- the file: encoding, delimiter, line endings (issue 9 item 5) ----------------------------------

LATIN_1_CSV = "external_id,text\n1,Le café est fermé\n2,Börse schließt höher\n".encode("latin-1")


def test_a_latin_1_file_is_refused_before_anything_is_stored(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(LATIN_1_CSV)
    with pytest.raises(ImportFileError) as refused:
        run_import(migrated_db, path)
    message = str(refused.value)
    assert "\n" not in message
    # The first byte that is not UTF-8 ("é" of café: offset 25, line 2), a named guess, and both ways out.
    assert f"{path}: not UTF-8: byte 0xe9 at offset 25 (line 2)" in message
    assert "charset-normalizer guesses" in message and "'1,Le café est fermé'" in message
    assert "iconv -f" in message and "-t utf-8" in message
    assert "volfefe import --encoding" in message
    assert stored(migrated_db) == {}


def test_the_encoding_is_checked_before_the_first_row_is_stored(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    rows = "".join(f"{i},headline {i}\n" for i in range(3000)).encode()
    path.write_bytes(b"external_id,text\n" + rows + b"last,caf\xe9\n")
    with pytest.raises(ImportFileError, match="line 3002"):
        run_import(migrated_db, path, chunk_size=100)
    assert stored(migrated_db) == {}


@pytest.mark.parametrize("name", ["latin-1", "latin1", "iso-8859-1", "cp1252"])
def test_encoding_reads_a_file_in_the_encoding_named(migrated_db: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(LATIN_1_CSV)
    with session_factory(migrated_db)() as session:
        report = import_posts(session, path, encoding=name)
    assert (report.inserted, report.rejected) == (2, [])
    assert report.read_as == f"CSV, comma-separated, {name} (as asked)"
    rows = stored(migrated_db)
    assert (rows["1"].text, rows["2"].text) == ("Le café est fermé", "Börse schließt höher")


def test_a_file_that_does_not_decode_in_the_encoding_named_is_refused(
    migrated_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(LATIN_1_CSV)
    with pytest.raises(ImportFileError, match="not utf-8: byte 0xe9 at offset 25 \\(line 2\\)"):
        import_file(migrated_db, path, encoding="utf-8")
    with pytest.raises(ImportFileError, match="unknown encoding 'klingon'"):
        import_file(migrated_db, path, encoding="klingon")
    assert stored(migrated_db) == {}


def test_a_utf_16_file_is_refused_as_not_utf_8(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("external_id,text\n1,café\n", encoding="utf-16")
    with pytest.raises(ImportFileError, match=r"not UTF-8: byte 0xff at offset 0 .*utf-16"):
        run_import(migrated_db, path)
    assert import_file(migrated_db, path, encoding="utf-16").inserted == 1
    assert stored(migrated_db)["1"].text == "café"


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), (",", "comma")])
def test_the_delimiter_is_sniffed(migrated_db: str, tmp_path: Path, delimiter: str, name: str) -> None:
    path = tmp_path / "posts.csv"
    lines = [
        ["external_id", "source", "text", "published_at"],
        ["1", "news", "Oil climbs 2%, stocks mixed; bonds flat", "2025-10-01T08:30:00Z"],
        ["2", "news", "Fed holds rates", ""],
        ["3", "news", 'He said "sell", then\tbought', ""],
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(lines)
    report = run_import(migrated_db, path)
    assert (report.inserted, report.rejected, report.read_as) == (3, [], f"CSV, {name}-separated, UTF-8")
    rows = stored(migrated_db)
    assert rows["1"].text == "Oil climbs 2%, stocks mixed; bonds flat"
    assert rows["3"].text == 'He said "sell", then\tbought'
    assert as_utc(rows["1"].published_at) == datetime(2025, 10, 1, 8, 30, tzinfo=UTC)


def test_a_header_without_the_columns_names_the_delimiter_found(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("id;body;date\n1;Stocks up;2025-01-01\n2;Bonds down;2025-01-02\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as refused:
        run_import(migrated_db, path)
    assert str(refused.value) == (
        f"{path}: the CSV header must name the columns 'text' and 'external_id'; read as "
        "semicolon-separated (also tried comma, semicolon and tab) it names 'id', 'body', 'date'"
    )


def test_byte_order_mark_and_crlf_line_endings(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(
        b"\xef\xbb\xbfexternal_id,text\r\n"  # 1
        b"1,Stocks rally\r\n"  # 2
        b'2,"two lines:\r\nsecond"\r\n'  # 3-4
        b"\r\n"  # 5: blank
        b",no id\r\n"  # 6
        b"4,caf\xc3\xa9\r\n"  # 7
    )
    report = run_import(migrated_db, path)
    assert report.read_as == "CSV, comma-separated, UTF-8 with a byte order mark"
    assert (report.inserted, report.rejected) == (3, [Rejected(6, "missing external_id")])
    rows = stored(migrated_db)
    # The byte order mark is not part of the first column's name; a CRLF inside a field reads as LF.
    assert (rows["1"].text, rows["2"].text, rows["4"].text) == ("Stocks rally", "two lines:\nsecond", "café")


def test_json_lines_with_byte_order_mark_and_crlf(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_bytes(
        codecs.BOM_UTF8
        + b'{"external_id": "1", "text": "Stocks rally"}\r\n'
        + b"\r\n"
        + b'{"external_id": "2", "text": "caf\xc3\xa9 \\r\\n kept"}\r\n'
        + b'{"text": "no id"}\r\n'
    )
    report = run_import(migrated_db, path)
    assert report.read_as == "JSON Lines, UTF-8 with a byte order mark"
    assert (report.inserted, report.rejected) == (2, [Rejected(4, "missing external_id")])
    rows = stored(migrated_db)
    # A line break written inside a JSON string is the post's own: kept.
    assert (rows["1"].text, rows["2"].text) == ("Stocks rally", "café \r\n kept")


def test_a_json_array_is_refused_with_how_to_convert_it(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.json"
    path.write_text('[{"external_id": "1", "text": "x"},\n {"external_id": "2", "text": "y"}]\n')
    with pytest.raises(ImportFileError, match=r"a JSON array, not JSON Lines.*jq -c"):
        run_import(migrated_db, path)


def test_a_csv_field_longer_than_the_csv_modules_limit_is_read(migrated_db: str, tmp_path: Path) -> None:
    long_text = "Stocks rally. " * 20_000  # 280,000 characters: csv's default limit is 131,072
    path = tmp_path / "posts.csv"
    path.write_text(f'external_id,text\n1,"{long_text}"\n2,short\n', encoding="utf-8")
    report = run_import(migrated_db, path)
    assert (report.inserted, report.rejected) == (2, [])
    assert stored(migrated_db)["1"].text == long_text


# -- duplicates of an external id --------------------------------------------------------------------


def test_duplicates_within_a_file(migrated_db: str, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "external_id,source,text\n"  # 1
        "x,twitter,Stocks rally\n"  # 2
        "y,twitter,Bonds fall\n"  # 3
        "x,twitter,Stocks rally\n"  # 4: the same text: already present
        "x,twitter,Stocks crash\n"  # 5: another text: rejected, the first stays
        "x,news,Stocks crash\n"  # 6: another source: another post
        "y,twitter,Bonds fall\n",  # 7
        encoding="utf-8",
    )
    report = run_import(migrated_db, path, chunk_size=2)
    assert (report.inserted, report.already_present) == (3, 2)
    assert report.rejected == [
        Rejected(
            5,
            "external_id 'x' (source 'twitter') already imported with a different text at line 2; kept the first",
        )
    ]
    with session_scope(migrated_db) as session:
        texts = {(c.source, c.external_id): c.text for c in session.scalars(select(Content))}
    assert texts == {
        ("twitter", "x"): "Stocks rally",
        ("twitter", "y"): "Bonds fall",
        ("news", "x"): "Stocks crash",
    }


def test_duplicates_against_the_database(migrated_db: str, tmp_path: Path) -> None:
    first = write_jsonl(
        tmp_path / "first.jsonl",
        [{"external_id": "a", "text": "Stocks rally"}, {"external_id": "b", "text": "Bonds fall"}],
    )
    assert run_import(migrated_db, first).inserted == 2
    second = write_jsonl(
        tmp_path / "second.jsonl",
        [
            {"external_id": "a", "text": "Stocks rally"},  # 1: the same: already present
            {"external_id": "b", "text": "Bonds soar"},  # 2: different: rejected, the stored one stays
            {"external_id": "c", "text": "Gold flat"},  # 3: new
            {"external_id": "b", "text": "Bonds soar"},  # 4: repeats line 2: rejected alike
            {"external_id": "a", "text": "Stocks rally"},  # 5: repeats line 1: already present
        ],
    )
    report = run_import(migrated_db, second)
    reason = (
        "external_id 'b' (source 'import') already imported with a different text in the database; "
        "kept the stored one"
    )
    assert (report.inserted, report.already_present) == (1, 2)
    assert report.rejected == [Rejected(2, reason), Rejected(4, reason)]
    rows = stored(migrated_db)
    assert (rows["a"].text, rows["b"].text, rows["c"].text) == ("Stocks rally", "Bonds fall", "Gold flat")


def test_a_repeat_waits_for_the_first_rows_outcome_across_chunks(migrated_db: str, tmp_path: Path) -> None:
    """A repeat in the same chunk as its first row is settled once the chunk is written."""
    run_import(migrated_db, write_jsonl(tmp_path / "a.jsonl", [{"external_id": "k", "text": "old"}]))
    path = write_jsonl(
        tmp_path / "b.jsonl",
        [{"external_id": "k", "text": "new"}, {"external_id": "k", "text": "new"}]
        + [{"external_id": f"n{i}", "text": f"p{i}"} for i in range(5)]
        + [{"external_id": "k", "text": "new"}],
    )
    report = run_import(migrated_db, path, chunk_size=3)
    assert [rejected.line for rejected in report.rejected] == [1, 2, 8]
    assert (report.inserted, report.already_present) == (5, 0)
    assert stored(migrated_db)["k"].text == "old"


# -- the command line: exit status, messages, help -------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def volfefe(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``python -m cli.main ARGUMENTS`` in a process of its own, on ``database_url``."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *arguments],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_volfefe_import_exits_1_when_a_row_is_rejected(database_url: str, tmp_path: Path) -> None:
    assert volfefe(database_url, "db", "upgrade").returncode == 0
    clean = tmp_path / "clean.csv"
    clean.write_text("external_id,text\n1,Stocks rally\n2,Bonds fall\n", encoding="utf-8")
    first = volfefe(database_url, "import", str(clean))
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == "inserted 2, already present 0, rejected 0 (read as CSV, comma-separated, UTF-8)\n"

    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        "external_id,text\n1,Stocks rally\n2,Bonds soar\n3,Gold flat\n,no id\n3,Gold up\n", encoding="utf-8"
    )
    result = volfefe(database_url, "import", str(mixed))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{mixed}: line 3: rejected: external_id '2' (source 'import') already imported with a different "
        "text in the database; kept the stored one",
        f"{mixed}: line 5: rejected: missing external_id",
        f"{mixed}: line 6: rejected: external_id '3' (source 'import') already imported with a different "
        "text at line 4; kept the first",
    ]
    assert (
        result.stdout == "inserted 1, already present 1, rejected 3 (read as CSV, comma-separated, UTF-8)\n"
    )
    # The good rows were loaded all the same.
    assert {row.external_id: row.text for row in stored(database_url).values()} == {
        "1": "Stocks rally",
        "2": "Bonds fall",
        "3": "Gold flat",
    }
    again = volfefe(database_url, "import", str(clean))
    assert (again.returncode, again.stdout.split(" (")[0]) == (0, "inserted 0, already present 2, rejected 0")


def test_volfefe_import_refuses_a_latin_1_file_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    assert volfefe(sqlite_url, "db", "upgrade").returncode == 0
    path = tmp_path / "posts.csv"
    path.write_bytes(LATIN_1_CSV)
    refused = volfefe(sqlite_url, "import", str(path))
    assert (refused.returncode, refused.stdout) == (1, "")
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"volfefe: error: {path}: not UTF-8: byte 0xe9 at offset 25 (line 2)")
    read = volfefe(sqlite_url, "import", "--encoding", "latin-1", str(path))
    assert read.returncode == 0, read.stderr
    assert (
        read.stdout
        == "inserted 2, already present 0, rejected 0 (read as CSV, comma-separated, latin-1 (as asked))\n"
    )


def test_volfefe_import_help_lists_the_columns_and_formats() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "import", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0
    text = result.stdout
    for column, kind in [("text", "required"), ("external_id", "required"), ("source", "optional"),
                         ("author", "optional"), ("url", "optional"), ("published_at", "optional")]:  # fmt: skip
        assert re.search(rf"^  {column} +{kind}", text, re.MULTILINE), column
    for words in [
        "CSV",
        "comma, semicolon or tab",
        "JSON Lines",
        ".jsonl",
        "ISO 8601",
        "--encoding",
        "UTF-8",
    ]:
        assert words in text, words


# -- real-shaped exports, read as a reader would (issue 9 item 2) ------------------------------------

EXPORTS = Path(__file__).resolve().parent / "fixtures" / "exports"
#: (source, external_id) -> (the words a reader sees, is_quote, is_repost), for every row of the exports.
EXPECTED_VISIBLE_TEXT: dict[tuple[str, str], tuple[str, bool, bool]] = {
    ("truth_social", "115300000000000001"): (
        "The Stock Market is doing GREAT today. Biggest gains in years! Thank you!",
        False,
        False,
    ),
    ("truth_social", "115300000000000002"): (
        "@SampleNewsDesk Tariff revenue hits a record high in October",
        False,
        True,
    ),
    ("truth_social", "115300000000000003"): ("Very important read on interest rates!", True, False),
    ("truth_social", "115300000000000004"): ("", True, False),
    ("truth_social", "115300000000000005"): ("Jobs report beats expectations", False, False),
    ("truth_social", "115300000000000006"): (
        "Prices are coming DOWN & wages are going UP! Energy costs < last year #Economy",
        False,
        False,
    ),
    ("truth_social", "115300000000000007"): ("BIG NEWS: tax cuts for working families", False, False),
    ("truth_social", "115300000000000008"): ("", False, False),
    ("truth_social", "115300000000000009"): ("The Fed must cut rates NOW!", False, False),
    ("truth_social", "115300000000000010"): (
        "Congratulations to @SampleCEO and @SampleBank on the record quarter!",
        False,
        False,
    ),
    ("truth_social", "115300000000000012"): ("", False, True),
    ("twitter", "1187350000000000001"): (
        "Jobs numbers are up & unemployment is down. Great day for the USA!",
        False,
        False,
    ),
    ("twitter", "1187350000000000002"): ("Great interview with @SampleAnchor on @SampleBiz", False, False),
    ("twitter", "1187350000000000003"): ("", False, False),
    ("twitter", "1187350000000000004"): (
        "Stock Market hits new high today, 401(k)s are way up",
        False,
        False,
    ),
    ("twitter", "1187350000000000005"): (
        "@SampleWire: Manufacturing orders surge in the third quarter, led by autos and steel",
        False,
        True,
    ),
    ("twitter", "1187350000000000006"): ("Big trade deal coming...", False, False),
    ("twitter", "1187350000000000007"): (
        "@SampleEconomist: Consumer confidence is at its highest level in 20 years",
        False,
        True,
    ),
    ("twitter", "1187350000000000008"): ("TARIFFS are making our Country RICH again!", False, False),
    ("twitter", "1187350000000000009"): ("The Dow is UP 500 points, the best day in months!", False, False),
    ("twitter", "1187350000000000010"): ("#MAGA #Jobs Record low unemployment!", False, False),
    ("twitter", "1187350000000000011"): (
        '"@SampleFan: The economy has never been better!" So true!',
        False,
        False,
    ),
    ("twitter", "1187350000000000012"): ("", False, False),
    ("twitter", "1187350000000000013"): ("Gas prices < $3 in many states >> great news", False, False),
    ("newswire", "n-001"): ("Oil prices climb 2%; OPEC signals output cuts", False, False),
    ("rss", "n-002"): (
        "Shares of Example Corp fell 4% after the company cut its outlook. Read more",
        False,
        False,
    ),
    ("newswire", "n-003"): ("Börse Frankfurt: DAX schließt 1,2 % höher", False, False),
    ("newswire", "n-004"): ("Fed holds rates steady, signals cuts ahead ...", False, False),
    ("rss", "n-005"): ("Treasury yields rise as inflation data beats forecasts", False, False),
    ("newswire", "n-006"): ("S&P 500 ends at record; Nasdaq up 1%", False, False),
    ("rss", "n-007"): ("Chipmakers rally as AI demand lifts forecasts", False, False),
}
#: the long Truth Social post: 14 paragraphs, read whole (beyond 512 tokens, far below the cap).
LONG_POST = ("truth_social", "115300000000000011")


def test_real_shaped_exports_import_and_read_as_a_reader_sees_them(migrated_db: str) -> None:
    reports = {
        name: run_import(migrated_db, EXPORTS / name)
        for name in ("truth_social.jsonl", "tweets.csv", "news.csv")
    }
    assert {name: report.read_as for name, report in reports.items()} == {
        "truth_social.jsonl": "JSON Lines, UTF-8",
        "tweets.csv": "CSV, comma-separated, UTF-8 with a byte order mark",
        "news.csv": "CSV, semicolon-separated, UTF-8",
    }
    assert all(report.rejected == [] for report in reports.values())
    assert sum(report.inserted for report in reports.values()) == len(EXPECTED_VISIBLE_TEXT) + 1
    with session_scope(migrated_db) as session:
        contents = {(c.source, c.external_id): c.text for c in session.scalars(select(Content))}
    assert set(contents) == {*EXPECTED_VISIBLE_TEXT, LONG_POST}
    read = {key: read_post(text) for key, text in contents.items()}
    assert {
        key: (post.text, post.is_quote, post.is_repost) for key, post in read.items() if key != LONG_POST
    } == EXPECTED_VISIBLE_TEXT
    long_post = read[LONG_POST]
    assert long_post.text.startswith("Our Country is doing better than ever before. The Stock Market")
    assert long_post.text.endswith("the people will keep more of what they earn.")
    assert "<" not in long_post.text and "  " not in long_post.text
    # 14 paragraphs of two or three sentences, one space between them; about 3,000 characters.
    assert long_post.text.count(". ") >= 20 and long_post.chars > 2800 and not long_post.cut
    # Importing them again adds nothing and rejects nothing.
    again = [run_import(migrated_db, EXPORTS / name) for name in reports]
    assert [(r.inserted, r.already_present, r.rejected) for r in again] == [
        (0, 12, []),
        (0, 13, []),
        (0, 7, []),
    ]
