"""The rules that find assets in a text: cashtags and the aliases of the asset list.

The rules, each tested (tests/test_entities_rules.py):

- **Cashtags.** ``$`` then 1 to 6 letters, with an optional class suffix (``$AAPL``, ``$tsla``,
  ``$BRK.B``, ``$BRK-B``), not inside a word. ``$5 billion``, ``$5B``, ``$100`` start with a digit:
  money, not a cashtag. A cashtag is resolved to the list by symbol (``.`` and ``-`` alike), then
  by a ticker-like alias (``$GOOG`` -> GOOGL, ``$BTC`` -> BTC-USD); one the list lacks keeps its
  ticker as the symbol (kind ``None``): the author named a ticker.
- **Aliases** match on word boundaries, under the case rule of how each is written
  (``entities.assets``); the longest alias at a place wins (``crude oil`` over ``oil``). An alias
  right after ``$`` is the cashtag's.
- **Exclude phrases** of an asset (``apple pie``, ``gold medal``) cancel its aliases inside them.
- **Links.** Nothing inside a web link or a domain name (``https://example.com/us/apple``,
  ``apple.com``) is a mention. The visible text has dropped most links already; this also holds
  for text that was not read through ``model.visible_text``.
- **People.** An equity's one-word name right after a title (``President Ford``, ``Mr. Ford``)
  or a common first name, with or without a middle initial (``Harrison Ford``, ``Gerald R. Ford``;
  ``first_names.txt``), names a person, and then so does every other lone use of that name in the
  text (``... Ford said``): one sense per post. A middle *name* is not looked through: in
  ``Donald Trump Tesla`` the first name is not the company's; ``Christine Blasey Ford`` is left to
  the NER model, whose person spans veto equity names (``entities.extract``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from entities.assets import Asset, AssetList, CaseRule
from entities.mentions import ALIAS, CASHTAG, Mention

#: file of first names, one a line (``#`` comments).
FIRST_NAMES_FILE = Path(__file__).with_name("first_names.txt")
#: words before a surname that make it a person's.
TITLES = frozenset(
    """Mr Mrs Ms Miss Dr President Senator Sen Governor Gov Rep Representative Congressman Congresswoman
    Judge Justice Secretary Ambassador General Gen Admiral Premier Minister Mayor Speaker Chairman
    Chairwoman Professor Prof Sir Dame Lady Lord Sheriff Coach Actor Actress Director""".split()
)

_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:[.\-][A-Za-z]{1,2})?)(?![\w$])")
_TICKER_LIKE = re.compile(r"[A-Z]{1,6}(?:[.\-][A-Z]{1,2})?")
_LINK = re.compile(
    r"(?:https?|ftp)://\S+"
    r"|(?<![\w.@])www\.\S+"
    r"|(?<![\w.@/-])(?:[a-z0-9-]+\.)+[a-z]{2,}/\S*"  # a domain with a path
    r"|(?<![\w.@/-])(?:[a-z0-9-]+\.)+(?:com|org|net|gov|edu|io|us|co|uk|news|info|biz|tv|ai)(?![\w.])",
    re.IGNORECASE,
)
_INITIAL = re.compile(r"[A-Z]\.?")


@dataclass(frozen=True)
class Veto:
    """Words the rules found to be no mention of ``symbol`` (a person's name, an exclude phrase)."""

    start: int
    end: int
    symbol: str


class RuleMatcher:
    """Cashtags and aliases of one asset list, compiled once."""

    def __init__(self, assets: AssetList) -> None:
        self.assets = assets
        self._by_ticker: dict[str, Asset] = {}
        for asset in assets:
            for alias in asset.aliases:
                if _TICKER_LIKE.fullmatch(alias.text):
                    self._by_ticker.setdefault(_ticker_key(alias.text), asset)
        for asset in assets:  # a symbol wins over another asset's alias
            self._by_ticker[_ticker_key(asset.symbol)] = asset
        # one named group per alias form: the group that matched says which asset (no lookup by the
        # matched text, which case-insensitive matching can spell unlike the alias: "OİL")
        pieces: list[tuple[int, str, Asset]] = []
        for asset in assets:
            for alias in asset.aliases:
                if alias.case is CaseRule.ANY:
                    pieces.append((len(alias.text), f"(?i:{_pattern(alias.text)})", asset))
                else:
                    pieces.extend((len(form), _pattern(form), asset) for form in alias.forms())
        pieces.sort(key=lambda piece: -piece[0])  # the longest alias at a place wins
        self._group_assets = {f"a{index}": asset for index, (_, _, asset) in enumerate(pieces)}
        # The alias pattern is tried only where a word that begins some alias begins (a big alternation
        # tried at every character costs ~1 ms a post); None: an alias begins with no word, try everywhere.
        firsts = [
            _WORD.match(text)
            for asset in assets
            for alias in asset.aliases
            for text in (alias.text, *alias.forms())
        ]
        self._first_words = None if None in firsts else {_fold(first.group()) for first in firsts if first}
        alternatives = "|".join(f"(?P<a{index}>{pattern})" for index, (_, pattern, _) in enumerate(pieces))
        self._aliases = re.compile(rf"(?<![\w$])(?:{alternatives or '(?!)'})(?!\w)")
        self._excludes = {
            asset.symbol: re.compile(
                r"(?<!\w)(?:" + "|".join(_pattern(phrase) for phrase in asset.exclude) + r")(?!\w)",
                re.IGNORECASE,
            )
            for asset in assets
            if asset.exclude
        }

    def find(self, text: str) -> tuple[list[Mention], list[Veto]]:
        """The mentions the rules find in ``text``, in text order, and the vetoed places."""
        links = link_spans(text)
        mentions = [mention for mention in self._cashtags(text) if not _inside(mention, links)]
        vetoes: list[Veto] = []
        candidates: list[tuple[Mention, Asset]] = []
        excluded: dict[str, list[tuple[int, int]]] = {}
        for match in self._alias_matches(text):
            asset = self._group_assets[match.lastgroup or ""]
            mention = Mention(asset.symbol, asset.kind, match.start(), match.end(), match.group(), ALIAS)
            if _inside(mention, links):
                continue
            if asset.symbol in self._excludes and asset.symbol not in excluded:
                excluded[asset.symbol] = [hit.span() for hit in self._excludes[asset.symbol].finditer(text)]
            if _inside(mention, excluded.get(asset.symbol, [])):
                vetoes.append(Veto(mention.start, mention.end, asset.symbol))
                continue
            candidates.append((mention, asset))
        people = {
            (asset.symbol, mention.text.casefold())
            for mention, asset in candidates
            if _may_be_surname(mention, asset) and _follows_a_name(text, mention.start)
        }
        for mention, asset in candidates:
            if _may_be_surname(mention, asset) and (asset.symbol, mention.text.casefold()) in people:
                vetoes.append(Veto(mention.start, mention.end, asset.symbol))
            else:
                mentions.append(mention)
        mentions.sort(key=lambda mention: mention.start)
        return mentions, vetoes

    def _alias_matches(self, text: str) -> Iterator[re.Match[str]]:
        """What ``self._aliases.finditer(text)`` finds: every match starts a word (its lookbehind)."""
        if self._first_words is None:
            yield from self._aliases.finditer(text)
            return
        end = 0
        for word in _WORD.finditer(text):
            if word.start() < end or _fold(word.group()) not in self._first_words:
                continue
            match = self._aliases.match(text, word.start())
            if match is not None:
                yield match
                end = match.end()

    def _cashtags(self, text: str) -> list[Mention]:
        found = []
        for match in _CASHTAG.finditer(text):
            ticker = match.group(1).upper()
            asset = self._by_ticker.get(_ticker_key(ticker))
            symbol, kind = (asset.symbol, asset.kind) if asset else (ticker, None)
            found.append(Mention(symbol, kind, match.start(), match.end(), match.group(), CASHTAG))
        return found


def link_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each web link and domain name in ``text``, in text order."""
    return [match.span() for match in _LINK.finditer(text)]


def inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Whether ``start:end`` lies within one of ``spans`` (non-overlapping, in text order)."""
    index = bisect.bisect_right(spans, (start, float("inf"))) - 1
    return index >= 0 and spans[index][0] <= start and end <= spans[index][1]


_WORD = re.compile(r"\w+")
#: what re's IGNORECASE treats alike, and str.casefold does not: dotless and dotted i.
_FOLDS = {ord("ı"): "i", 0x307: None}


def _fold(word: str) -> str:
    return word.casefold().translate(_FOLDS)


def _pattern(alias: str) -> str:
    return r"\s+".join(re.escape(word) for word in alias.split())


def _ticker_key(ticker: str) -> str:
    return ticker.upper().replace("-", ".")


def _inside(mention: Mention, spans: list[tuple[int, int]]) -> bool:
    return inside(mention.start, mention.end, spans)


def _may_be_surname(mention: Mention, asset: Asset) -> bool:
    return asset.kind == "equity" and " " not in mention.text and mention.text[:1].isupper()


def _follows_a_name(text: str, start: int) -> bool:
    """Whether the word before ``start`` is a title or a first name, or the two words before are a
    first name and an initial (``Gerald R.``)."""
    if start == 0 or not text[start - 1].isspace():
        return False
    words = text[max(0, start - 80) : start].split()[-2:]
    if not words:
        return False
    nearest = words[-1]
    if _is_title(nearest) or _is_first_name(nearest):
        return True
    return len(words) == 2 and _is_first_name(words[0]) and bool(_INITIAL.fullmatch(nearest))


def _is_title(word: str) -> bool:
    word = word.removesuffix(".")
    return word in TITLES or (word.title() in TITLES and word.isupper())


def _is_first_name(word: str) -> bool:
    return word in first_names() or (word.isupper() and word.title() in first_names())


@cache
def first_names() -> frozenset[str]:
    lines = FIRST_NAMES_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))
