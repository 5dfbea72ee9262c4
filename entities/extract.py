"""Entity extraction: the assets a post names, with where and how, and its links.

``EntityExtractor`` holds an asset list (compiled once), the default asset and, optionally, a NER
model; a worker builds one and keeps it. It finds:

1. cashtags and aliases by the rules of ``entities.rules``;
2. with a model, organisation spans that no rule found, resolved to the list by
   ``entities.resolve``: a resolved one is a mention with method ``model``; one that resolves to no
   asset is kept as an unlinked mention (``symbol`` ``None``) for people to read, and links nothing.
   An organisation the rules refused (``Ford`` in ``Harrison Ford``) does not resolve to that asset;
   one in a web link or domain name (``acme.com``) is no mention, as for the rules.
   The model's person spans also refuse an equity's alias inside them (``Tim Cook`` stays a person).

A text that names no asset (unlinked organisations do not count) is linked to the default asset
with method ``default``, so that reports can tell "about the market" from "names SPY".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from entities.assets import AssetList, load_assets
from entities.mentions import ALIAS, MODEL, Entities, Mention, link_mentions
from entities.ner import EntityRecognizer, NamedSpan
from entities.resolve import OrgResolver
from entities.rules import RuleMatcher, Veto, link_spans
from entities.settings import DEFAULT_ASSET, DEFAULT_ASSET_ENV, EntitySettings, read_settings
from errors import VolfefeError
from model.visible_text import read_post


class EntityConfigError(VolfefeError):
    """Settings that cannot work together (a default asset that is not in the list)."""


class EntityExtractor:
    def __init__(
        self,
        assets: AssetList,
        default_asset: str = DEFAULT_ASSET,
        recognizer: EntityRecognizer | None = None,
    ) -> None:
        default = assets.get(default_asset)
        if default is None:
            origins = sorted({asset.origin.rsplit(":", 1)[0] for asset in assets})
            raise EntityConfigError(
                f"{DEFAULT_ASSET_ENV}={default_asset!r} is not in the asset list ({', '.join(origins)})"
            )
        self.assets = assets
        self.default_asset = default
        self.recognizer = recognizer
        self.assets_version = assets.fingerprint()
        self._rules = RuleMatcher(assets)
        self._orgs = OrgResolver(assets)

    @classmethod
    def from_settings(cls, settings: EntitySettings | None = None) -> EntityExtractor:
        """The extractor the settings describe (default: ``read_settings()``, the environment)."""
        settings = settings or read_settings()
        assets = load_assets(settings.asset_files)
        recognizer = EntityRecognizer.load(settings.ner_model) if settings.ner_model else None
        return cls(assets, settings.default_asset, recognizer)

    def extract(self, text: str) -> list[Mention]:
        """The mentions in ``text`` (visible text), in text order."""
        return self.extract_many([text])[0]

    def extract_many(self, texts: Sequence[str]) -> list[list[Mention]]:
        """``extract`` of each text; the model, if any, reads them in batches."""
        named = self.recognizer.recognize(texts) if self.recognizer else [[] for _ in texts]
        return [self._mentions(text, spans) for text, spans in zip(texts, named, strict=True)]

    def entities(self, text: str) -> Entities:
        return self.entities_many([text])[0]

    def entities_many(self, texts: Sequence[str]) -> list[Entities]:
        return [self._entities(mentions) for mentions in self.extract_many(texts)]

    def entities_of_posts(self, raws: Sequence[str]) -> list[Entities]:
        """``entities`` of the visible text of each stored post (``model.visible_text.read_post``)."""
        return self.entities_many([read_post(raw).text for raw in raws])

    def _entities(self, mentions: list[Mention]) -> Entities:
        links = link_mentions(mentions, self.default_asset.symbol, self.default_asset.kind)
        source = self.recognizer.source if self.recognizer else None
        return Entities(tuple(mentions), links, self.assets_version, source)

    def _mentions(self, text: str, named: list[NamedSpan]) -> list[Mention]:
        mentions, vetoes = self._rules.find(text)
        if not named:
            return mentions
        people = [span for span in named if span.label == "PER"]
        kept: list[Mention] = []
        for mention in mentions:
            if mention.method == ALIAS and mention.kind == "equity" and _within_any(mention, people):
                vetoes.append(Veto(mention.start, mention.end, mention.symbol or ""))
            else:
                kept.append(mention)
        links = link_spans(text)
        for span in named:
            if span.label != "ORG" or any(_overlap(span, other.start, other.end) for other in kept):
                continue
            if any(_overlap(span, start, end) for start, end in links):  # as the rules: not in a link
                continue
            asset = self._orgs.resolve(text[span.start : span.end])
            if asset is not None and any(
                veto.symbol == asset.symbol and _overlap(span, veto.start, veto.end) for veto in vetoes
            ):
                asset = None
            symbol, kind = (asset.symbol, asset.kind) if asset else (None, None)
            kept.append(
                Mention(symbol, kind, span.start, span.end, text[span.start : span.end], MODEL, span.score)
            )
        kept.sort(key=lambda mention: mention.start)
        return kept


def _overlap(span: NamedSpan, start: int, end: int) -> bool:
    return span.start < end and start < span.end


def _within_any(mention: Mention, spans: list[NamedSpan]) -> bool:
    return any(span.start <= mention.start and mention.end <= span.end for span in spans)


@cache
def default_extractor() -> EntityExtractor:
    """The extractor of the environment's settings, built on first use and kept for the process."""
    return EntityExtractor.from_settings(read_settings())


def extract(text: str) -> list[Mention]:
    """The mentions in the visible text ``text``, by the environment's settings."""
    return default_extractor().extract(text)


def entities_of_post(raw: str) -> Entities:
    """Mentions and links of the stored post ``raw`` (HTML or plain text), by the environment's settings."""
    return default_extractor().entities_of_posts([raw])[0]
