"""The posts file ``volfefe import`` reads: formats, columns and their limits (no database imports).

Kept apart from ``db.importer`` so that the command line can show it without importing SQLAlchemy's
ORM.
"""

from __future__ import annotations

#: source recorded for rows that name none.
DEFAULT_SOURCE = "import"
#: columns a row must have.
REQUIRED_COLUMNS = ("text", "external_id")
#: characters at most, per column (the database's column sizes).
FIELD_LIMITS = {"external_id": 255, "source": 64, "author": 255}
#: CSV delimiters recognised, and their names in messages.
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
#: file name endings read as JSON Lines (any other file is read as CSV).
JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})

#: the file format, as ``volfefe import --help`` shows it.
FILE_FORMAT_HELP = f"""\
Load posts into the database. Importing a file again adds nothing.

formats:
  CSV          a header row, then one post per row; delimiter comma, semicolon or tab (sniffed);
               a field holding the delimiter, a quote or a line break is in double quotes
  JSON Lines   files named .jsonl, .ndjson or .json: one JSON object per line

columns (CSV header names or JSON keys; other columns are ignored):
  text           required: the post as published (HTML is kept; the model reads its visible text)
  external_id    required: the post's id where it comes from (at most {FIELD_LIMITS["external_id"]} characters)
  source         optional: where it comes from, e.g. twitter (at most {FIELD_LIMITS["source"]}; default "{DEFAULT_SOURCE}")
  author         optional: at most {FIELD_LIMITS["author"]} characters
  url            optional
  published_at   optional: ISO 8601 (2025-03-01T14:02:00Z, 2025-03-01T16:02:00+02:00, 2025-03-01;
                 without an offset: UTC), or in JSON a number of seconds since 1970 (Unix time)

encoding: UTF-8, with or without a byte order mark. For another encoding, convert the file
(iconv -f latin1 -t utf-8 in.csv > out.csv) or name it with --encoding.

duplicates: a row whose source and external_id are already in the file or the database counts as
already present when its text is the same, and is rejected when its text differs (the first stays).

exit status: 0 when every row was inserted or already present; 1 when a row was rejected (the
others are loaded: one line per rejected row names it) or the file cannot be read.
"""
