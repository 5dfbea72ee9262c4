"""Test helper: the figures a sentiment-picture page states in its ``data-*`` attributes, read with the
standard library's HTML parser (entities decoded, as a browser shows them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

#: elements that have no end tag.
VOID = {"meta", "input", "br", "img", "link", "hr", "col", "source", "wbr"}


@dataclass
class Move:
    """One listed significant move: the item's ``data-*`` attributes, its assets' and readings'."""

    attributes: dict[str, str]
    assets: list[dict[str, str]] = field(default_factory=list)
    #: model name -> the reading's attributes (listed only where several models run).
    models: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class PageFigures:
    summary: dict[str, str] = field(default_factory=dict)
    #: data-period -> the row's data-* attributes.
    periods: dict[str, dict[str, str]] = field(default_factory=dict)
    #: table id (confidence-bins, margin-bins) -> bin -> attributes.
    bins: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    #: list id (most-negative, most-positive) -> [(attributes, quoted text)].
    posts: dict[str, list[tuple[dict[str, str], str]]] = field(default_factory=dict)
    model_versions: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: data-empty of the "nothing to show" paragraph, when there is one.
    empty: str | None = None
    #: data-chart of each chart figure, in page order.
    charts: list[str] = field(default_factory=list)
    scripts: int = 0
    #: the policy the page states in its ``<meta http-equiv="Content-Security-Policy">``.
    content_security_policy: str | None = None
    #: the attributes of the reactions' summary (``id="reactions"``: the figures, or ``data-records="0"``).
    reactions: dict[str, str] = field(default_factory=dict)
    #: window -> the hit-rate row's attributes.
    hit_rates: dict[str, dict[str, str]] = field(default_factory=dict)
    #: (window, sentiment) -> the mean abnormal return row's attributes.
    abnormal_returns: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: the largest significant moves, in page order: their attributes, assets and each model's reading.
    moves: list[Move] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.figures = PageFigures()
        self._open: list[tuple[str, dict[str, str]]] = []
        self._text: list[str] | None = None
        self._warning: list[str] | None = None

    def _within(self, tag: str) -> dict[str, str] | None:
        for name, attributes in reversed(self._open):
            if name == tag:
                return attributes
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        figures = self.figures
        if tag == "script":
            figures.scripts += 1
        if tag == "meta" and attributes.get("http-equiv", "").lower() == "content-security-policy":
            figures.content_security_policy = attributes.get("content")
        if tag == "dl" and attributes.get("id") == "summary":
            figures.summary = attributes
        if tag == "tr" and "data-period" in attributes:
            figures.periods[attributes["data-period"]] = attributes
        if tag == "tr" and "data-bin" in attributes:
            table = self._within("table") or {}
            figures.bins.setdefault(table.get("id", ""), {})[int(attributes["data-bin"])] = attributes
        if tag == "li" and "data-model-version" in attributes:
            figures.model_versions[attributes["data-model-version"]] = int(attributes["data-count"])
        if attributes.get("id") == "reactions":
            figures.reactions = attributes
        table_id = (self._within("table") or {}).get("id")
        if tag == "tr" and table_id == "reaction-hit-rates" and "data-window" in attributes:
            figures.hit_rates[attributes["data-window"]] = attributes
        if tag == "tr" and table_id == "reaction-abnormal-returns" and "data-window" in attributes:
            figures.abnormal_returns[(attributes["data-window"], attributes["data-sentiment"])] = attributes
        if tag == "li" and (self._within("ol") or {}).get("id") == "reaction-moves":
            if attributes.get("class") == "post":
                figures.moves.append(Move(attributes))
            elif "data-asset" in attributes:
                figures.moves[-1].assets.append(attributes)
            elif "data-model" in attributes:
                figures.moves[-1].models[attributes["data-model"]] = attributes
        if tag == "figure" and "data-chart" in attributes:
            figures.charts.append(attributes["data-chart"])
        if "data-empty" in attributes:
            figures.empty = attributes["data-empty"]
        if "data-warning" in attributes:
            self._warning = []
        if tag == "blockquote" and (self._within("li") or {}).get("class") == "post":
            self._text = []
        if tag not in VOID:
            self._open.append((tag, attributes))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # SVG shapes: nothing to read

    def handle_endtag(self, tag: str) -> None:
        if tag == "blockquote" and self._text is not None:
            item = self._within("li") or {}
            listing = self._within("ol") or {}
            self.figures.posts.setdefault(listing.get("id", ""), []).append((item, "".join(self._text)))
            self._text = None
        if tag == "p" and self._warning is not None:
            self.figures.warnings.append("".join(self._warning).strip())
            self._warning = None
        while self._open:
            name, _ = self._open.pop()
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        if self._warning is not None:
            self._warning.append(data)


def read_page(html: str) -> PageFigures:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.figures
