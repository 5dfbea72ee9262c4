"""The asset list: what can be linked, and the words that name each asset.

A list is a UTF-8 CSV file with a header row and these columns (any order):

- ``symbol`` (required): the symbol the user's price data uses, upper case (``AAPL``, ``BRK.B``,
  ``BTC-USD``, ``^GSPC``, ``CL=F``).
- ``name`` (required): what the asset is, for people.
- ``kind`` (required): one of ``KINDS``.
- ``aliases``: the words that name the asset in a post, separated by ``|``. How an alias is written
  says how it matches (always on word boundaries):

  - all lower case (``oil``, ``interest rates``): in any case (``Oil``, ``OIL``);
  - with capitals (``Apple``, ``GM``): as written, or in capitals (``APPLE``), so ``apple pie``
    is not Apple;
  - with a leading ``=`` (``=Target``): exactly as written, for names that are also common words
    that posts shout (``OUR TARGET IS`` is not Target).
- ``exclude``: phrases, separated by ``|``, in which an alias does not name the asset
  (``apple pie``, ``gold medal``, ``New Mexico``); matched in any case. Each must contain one of
  the row's aliases.

Blank lines and lines whose first field starts with ``#`` are skipped. Loading is strict: the
first bad row stops it with ``AssetListError``, one line naming the file and the line.

Several lists merge in order (``load_assets``): a later row with the same symbol replaces the
earlier row, and an alias a later list gives to another symbol moves to it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from errors import VolfefeError

#: what an asset can be.
KINDS = ("equity", "etf", "index", "commodity", "currency", "rate", "crypto", "bond", "fund", "future")
#: columns a list must have, and the optional ones.
REQUIRED_COLUMNS = ("symbol", "name", "kind")
OPTIONAL_COLUMNS = ("aliases", "exclude")
#: separator of aliases and of exclude phrases within their column.
LIST_SEPARATOR = "|"
#: prefix of an alias that matches exactly as written.
EXACT_PREFIX = "="

_SYMBOL = re.compile(r"[A-Z0-9^][A-Z0-9.\-=^/]{0,19}")
_HAS_WORD_CHARACTER = re.compile(r"\w")


class AssetListError(VolfefeError):
    """A bad asset list: one line naming the file, the line and the problem."""


class CaseRule(Enum):
    ANY = "any"  # written in lower case: matches in any case
    AS_WRITTEN_OR_UPPER = "as_written_or_upper"  # written with capitals
    EXACT = "exact"  # written with a leading "="


@dataclass(frozen=True)
class Alias:
    text: str
    case: CaseRule

    @classmethod
    def parse(cls, written: str) -> Alias:
        if written.startswith(EXACT_PREFIX):
            return cls(written[len(EXACT_PREFIX) :].strip(), CaseRule.EXACT)
        rule = CaseRule.ANY if written == written.lower() else CaseRule.AS_WRITTEN_OR_UPPER
        return cls(written, rule)

    def forms(self) -> tuple[str, ...]:
        """The exact surface forms it matches (for rules other than ``ANY``)."""
        if self.case is CaseRule.AS_WRITTEN_OR_UPPER and self.text.upper() != self.text:
            return (self.text, self.text.upper())
        return (self.text,)

    def written(self) -> str:
        return EXACT_PREFIX + self.text if self.case is CaseRule.EXACT else self.text

    def overlaps(self, other: Alias) -> bool:
        """Whether some text would match both (``=Meta`` and ``META`` do not; ``Fed`` and ``fed`` do)."""
        if CaseRule.ANY in (self.case, other.case):
            return self.text.casefold() == other.text.casefold()
        return not set(self.forms()).isdisjoint(other.forms())


@dataclass(frozen=True)
class Asset:
    symbol: str
    name: str
    kind: str
    aliases: tuple[Alias, ...] = ()
    exclude: tuple[str, ...] = ()
    #: where the row came from: ``path:line``.
    origin: str = ""


class AssetList:
    """The merged assets, by symbol, in list order."""

    def __init__(self, assets: Iterable[Asset]) -> None:
        self.assets: tuple[Asset, ...] = tuple(assets)
        self._by_symbol = {asset.symbol: asset for asset in self.assets}

    def __iter__(self) -> Iterator[Asset]:
        return iter(self.assets)

    def __len__(self) -> int:
        return len(self.assets)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def get(self, symbol: str) -> Asset | None:
        return self._by_symbol.get(symbol)

    def fingerprint(self) -> str:
        """12 hex digits that change with any symbol, kind, alias or exclude phrase: stored with each
        result, so that results of another list can be told apart."""
        rows = [
            [asset.symbol, asset.kind, [alias.written() for alias in asset.aliases], list(asset.exclude)]
            for asset in self.assets
        ]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:12]


def load_assets(paths: Sequence[Path]) -> AssetList:
    """The assets of the lists at ``paths``, merged in order (see the module docstring)."""
    merged: dict[str, Asset] = {}
    for path in paths:
        rows = load_asset_file(path)
        taken = [alias for asset in rows for alias in asset.aliases]
        for symbol, asset in list(merged.items()):
            kept = tuple(alias for alias in asset.aliases if not any(alias.overlaps(new) for new in taken))
            if len(kept) != len(asset.aliases):
                merged[symbol] = replace(asset, aliases=kept)
        for asset in rows:
            merged.pop(asset.symbol, None)  # a replaced row takes the new row's place at the end
            merged[asset.symbol] = asset
    return AssetList(merged.values())


def load_asset_file(path: Path) -> list[Asset]:
    """The rows of one list; raises AssetListError at the first bad one."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise AssetListError(f"{path}: line 1: {error}") from None
    if header is None:
        raise AssetListError(f"{path}: the file is empty (it needs a header: {','.join(REQUIRED_COLUMNS)})")
    columns = [name.strip().lower() for name in header]
    _check_header(path, columns)
    assets: list[Asset] = []
    symbol_lines: dict[str, int] = {}
    alias_owners: list[tuple[Alias, str, int]] = []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next(reader, None)
        except csv.Error as error:
            raise AssetListError(f"{path}: line {start}: {error}") from None
        if fields is None:
            return assets
        line = reader.line_num
        if not any(field.strip() for field in fields) or fields[0].lstrip().startswith("#"):
            continue
        if len(fields) != len(columns):
            raise AssetListError(
                f"{path}: line {start}: {len(fields)} fields, the header has {len(columns)} "
                f"(a field with a comma needs double quotes)"
            )
        asset = _parse_row(path, start, dict(zip(columns, (field.strip() for field in fields), strict=True)))
        if asset.symbol in symbol_lines:
            raise AssetListError(
                f"{path}: line {start}: symbol {asset.symbol} is already on line {symbol_lines[asset.symbol]}"
            )
        symbol_lines[asset.symbol] = start
        for alias in asset.aliases:
            for other, owner, owner_line in alias_owners:
                if alias.overlaps(other):
                    raise AssetListError(
                        f"{path}: line {start}: alias {alias.written()!r} of {asset.symbol} overlaps "
                        f"{other.written()!r}, an alias of {owner} (line {owner_line})"
                    )
        alias_owners.extend((alias, asset.symbol, start) for alias in asset.aliases)
        assets.append(asset)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AssetListError(f"{path}: no such asset list") from None
    except OSError as error:
        raise AssetListError(f"{path}: cannot read the asset list: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise AssetListError(
            f"{path}: line {line}: not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None


def _check_header(path: Path, columns: list[str]) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(name) for name in unknown)}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(repeated)}")
    if problems:
        expected = ",".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
        raise AssetListError(f"{path}: line 1: {'; '.join(problems)} (the columns are {expected})")


def _parse_row(path: Path, line: int, row: dict[str, str]) -> Asset:
    def bad(problem: str) -> AssetListError:
        return AssetListError(f"{path}: line {line}: {problem}")

    symbol, name, kind = row["symbol"], row["name"], row["kind"]
    if not symbol:
        raise bad("no symbol")
    if not _SYMBOL.fullmatch(symbol):
        upper = " (symbols are upper case)" if symbol != symbol.upper() else ""
        raise bad(f"symbol {symbol!r} is not a ticker symbol{upper}")
    if not name:
        raise bad(f"no name for {symbol}")
    if kind not in KINDS:
        raise bad(f"kind {kind!r} of {symbol} is not one of {', '.join(KINDS)}")
    aliases: list[Alias] = []
    for written in _split(row.get("aliases", ""), bad, "alias"):
        alias = Alias.parse(written)
        if not _HAS_WORD_CHARACTER.search(alias.text):
            raise bad(f"alias {written!r} of {symbol} has no letter or digit")
        if any(alias.overlaps(other) for other in aliases):
            raise bad(
                f"alias {written!r} of {symbol} is listed twice (or matches what another of its aliases does)"
            )
        aliases.append(alias)
    exclude = _split(row.get("exclude", ""), bad, "exclude phrase")
    for phrase in exclude:
        if not any(_alias_key(alias.text) in _alias_key(phrase) for alias in aliases):
            raise bad(f"exclude phrase {phrase!r} of {symbol} contains none of its aliases")
    return Asset(symbol, name, kind, tuple(aliases), tuple(exclude), f"{path}:{line}")


def _split(value: str, bad, what: str) -> list[str]:
    if not value:
        return []
    parts = [part.strip() for part in value.split(LIST_SEPARATOR)]
    if any(not part or part == EXACT_PREFIX for part in parts):
        raise bad(f"an empty {what} in {value!r} (separate them with a single {LIST_SEPARATOR!r})")
    return parts


def _alias_key(text: str) -> str:
    return text.casefold()
