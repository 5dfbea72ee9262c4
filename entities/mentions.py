"""What entity extraction finds in a text, and the JSON it is stored as.

A ``Mention`` is one place in the visible text that names an asset: its span, its surface text and
how it was found. An ``AssetLink`` is one asset the text is linked to, from its mentions, or the
default asset when the text names none. ``Entities`` holds both for one text, with the version of
the asset list and the model that produced them, and converts to and from plain JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: how a mention was found: ``$AAPL``; a name or alias of the list; an organisation the NER model
#: found (linked when it resolves to an asset of the list); or no mention at all (the default link).
CASHTAG = "cashtag"
ALIAS = "alias"
MODEL = "model"
DEFAULT = "default"
#: a link's method is its strongest mention's, in this order.
METHOD_STRENGTH = (CASHTAG, ALIAS, MODEL)
#: version of the JSON shape of ``Entities.to_json``.
JSON_SCHEMA = 1


@dataclass(frozen=True)
class Mention:
    #: the asset's symbol; ``None`` for an organisation the model found that is not in the list.
    symbol: str | None
    #: the asset's kind (``equity``, ``etf``, ...); ``None`` when the asset is not in the list
    #: (an unlisted cashtag such as ``$PLTR``, or an unlinked organisation).
    kind: str | None
    #: offsets into the visible text: ``text == visible[start:end]``.
    start: int
    end: int
    text: str
    #: ``cashtag``, ``alias`` or ``model``.
    method: str
    #: the model's score for a ``model`` mention; ``None`` otherwise.
    score: float | None = None


@dataclass(frozen=True)
class AssetLink:
    symbol: str
    kind: str | None
    #: the strongest method among its mentions, or ``default`` for the default link.
    method: str
    #: how many mentions name it (0 for the default link).
    mentions: int


@dataclass(frozen=True)
class Entities:
    mentions: tuple[Mention, ...]
    links: tuple[AssetLink, ...]
    #: ``AssetList.fingerprint()`` of the list used.
    assets_version: str
    #: the NER model used (hub id or folder), ``None`` for rules only.
    ner_model: str | None = None

    @property
    def is_default(self) -> bool:
        """The text names no asset: its only link is the default one."""
        return any(link.method == DEFAULT for link in self.links)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(link.symbol for link in self.links)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": JSON_SCHEMA,
            "mentions": [asdict(mention) for mention in self.mentions],
            "links": [asdict(link) for link in self.links],
            "assets_version": self.assets_version,
            "ner_model": self.ner_model,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entities:
        if data.get("schema") != JSON_SCHEMA:
            raise ValueError(f"entities JSON schema {data.get('schema')!r} is not {JSON_SCHEMA}")
        return cls(
            mentions=tuple(Mention(**mention) for mention in data["mentions"]),
            links=tuple(AssetLink(**link) for link in data["links"]),
            assets_version=data["assets_version"],
            ner_model=data.get("ner_model"),
        )


def link_mentions(
    mentions: Iterable[Mention], default_symbol: str, default_kind: str | None
) -> tuple[AssetLink, ...]:
    """One link per symbol named, in order of first mention; the default link when none is."""
    counts: dict[str, int] = {}
    first: dict[str, Mention] = {}
    method: dict[str, str] = {}
    for mention in mentions:
        if mention.symbol is None:
            continue
        symbol = mention.symbol
        counts[symbol] = counts.get(symbol, 0) + 1
        first.setdefault(symbol, mention)
        if symbol not in method or METHOD_STRENGTH.index(mention.method) < METHOD_STRENGTH.index(
            method[symbol]
        ):
            method[symbol] = mention.method
    if not counts:
        return (AssetLink(default_symbol, default_kind, DEFAULT, 0),)
    return tuple(AssetLink(symbol, first[symbol].kind, method[symbol], counts[symbol]) for symbol in counts)
