"""The bars file ``volfefe import-prices`` reads: columns, limits and its help (no database imports)."""

from __future__ import annotations

#: columns a CSV header must name (``volume`` and ``resolution`` are optional).
REQUIRED_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close")
#: characters a symbol may have (the column's size).
SYMBOL_LIMIT = 32
#: epoch values at or above this are taken for milliseconds, and refused (seconds are asked for).
EPOCH_MILLISECONDS_FROM = 100_000_000_000

FILE_FORMAT_HELP = f"""\
Load price bars (OHLCV) into the database. Importing a file again adds nothing.

formats: CSV (a header row; comma, semicolon or tab, sniffed) or JSON Lines (.jsonl, .ndjson, .json),
UTF-8, as `volfefe import` reads posts.

columns (CSV header names or JSON keys; other columns are ignored):
  symbol       required: at most {SYMBOL_LIMIT} characters, no spaces; kept as written (SPY and spy differ)
  timestamp    required: the START of the bar, with its zone: ISO 8601 with an offset
               (2025-03-10T13:30:00Z, 2025-03-10T09:30:00-04:00) or Unix time in seconds
               (1741613400); a time without a zone is refused. Daily bars (1d): the session's date
               (2025-03-10), or a timestamp whose date, as written in its own offset, is the session
  open, high, low, close   required: positive numbers, low <= open, close <= high
  volume       optional: a number >= 0 (empty: none, e.g. an index)
  resolution   optional: the bar's length, 1m, 5m, 15m, 1h or 1d (else --resolution, which it overrides)

duplicates: a bar is one (symbol, resolution, timestamp). One already stored with the same values counts
as already present; one stored with other values is reported as conflicting and the stored one is kept
(stored bars are never altered: to correct a bar, delete it first).

exit status: 0 when every row was inserted or already present; 1 when a row was rejected or
conflicting (the others are loaded; the first rows of each are named with their line) or the file
cannot be read.
"""
