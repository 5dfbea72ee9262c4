"""Resolving an organisation name the NER model found to an asset of the list.

A name is normalised (case, punctuation, a possessive ``'s``, a leading ``the`` and corporate
suffixes such as ``Inc``, ``Corp``, ``Co``, ``Holdings`` dropped) and looked up among the assets'
normalised names and aliases:

1. the same key (``Microsoft Corp.`` -> MSFT, ``the Federal Reserve`` -> TLT);
2. else its longest leading run of words that is a key of 4 characters or more
   (``Tesla Motors`` -> TSLA, ``Amazon Web Services`` -> AMZN);
3. else the closest key by ``difflib`` similarity of at least ``FUZZY_CUTOFF``
   (``JP Morgan Chase`` -> JPM, ``Wallmart`` -> WMT).

A name inside one of the asset's exclude phrases (``Ford Foundation``) does not resolve to it.
A key that two assets share is ambiguous and resolves to neither.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

from entities.assets import Asset, AssetList

#: least ``difflib.SequenceMatcher`` ratio for a fuzzy match (0-1).
FUZZY_CUTOFF = 0.88
#: least length of a key matched by a leading run of words or fuzzily (characters).
MIN_PARTIAL_KEY = 4
#: words dropped from the end of an organisation name.
CORPORATE_SUFFIXES = frozenset(
    "inc incorporated corp corporation co company companies ltd limited plc llc lp holdings holding "
    "group sa ag nv se".split()
)

_PARENTHESES = re.compile(r"\([^)]*\)")
_NOT_WORD = re.compile(r"[^\w&+]+")


class OrgResolver:
    """Keys of an asset list's names and aliases, built once."""

    def __init__(self, assets: AssetList) -> None:
        keys: dict[str, Asset | None] = {}
        for asset in assets:
            texts = [_PARENTHESES.sub(" ", asset.name), *(alias.text for alias in asset.aliases)]
            for key in {normalise(text) for text in texts} - {""}:
                known = keys.get(key, asset)
                keys[key] = asset if known is asset else None  # shared by two assets: ambiguous
        self._keys = {key: asset for key, asset in keys.items() if asset is not None}
        self._partial_keys = [key for key in self._keys if len(key) >= MIN_PARTIAL_KEY]

    def resolve(self, name: str) -> Asset | None:
        """The asset ``name`` names, or ``None``."""
        key = normalise(name)
        if not key:
            return None
        asset = self._keys.get(key)
        if asset is None:
            words = key.split()
            for length in range(len(words) - 1, 0, -1):
                prefix = " ".join(words[:length])
                if len(prefix) >= MIN_PARTIAL_KEY and prefix in self._keys:
                    asset = self._keys[prefix]
                    break
        if asset is None and len(key) >= MIN_PARTIAL_KEY:
            close = difflib.get_close_matches(key, self._partial_keys, n=1, cutoff=FUZZY_CUTOFF)
            asset = self._keys[close[0]] if close else None
        if asset is not None and any(phrase.casefold() in name.casefold() for phrase in asset.exclude):
            return None
        return asset


def normalise(name: str) -> str:
    """The lookup key of an organisation name (see the module docstring)."""
    text = unicodedata.normalize("NFKC", name).casefold().replace("’", "'")
    text = re.sub(r"'s\b", "", text)
    words = _NOT_WORD.sub(" ", text.replace(".", "")).split()
    if words and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in CORPORATE_SUFFIXES:
        words.pop()
    return " ".join(words)
