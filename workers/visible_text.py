"""What the model reads of a post: its visible text, without markup, links or extra whitespace."""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: elements whose content is never shown to a reader.
#: (not <head>: posts rarely close it, and an unclosed one would hide the whole post.)
_INVISIBLE_ELEMENTS = frozenset({"script", "style", "title", "template", "noscript"})
#: elements that separate words when rendered.
_BLOCK_ELEMENTS = frozenset(
    {
        "body",
        "br",
        "p",
        "div",
        "section",
        "article",
        "blockquote",
        "hr",
        "ul",
        "ol",
        "li",
        "table",
        "tr",
        "td",
        "th",
    }
    | {"h1", "h2", "h3", "h4", "h5", "h6"}
)
_LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_MARKUP_HINT = re.compile(r"<[a-zA-Z/!]|&[#a-zA-Z0-9]+;")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _INVISIBLE_ELEMENTS:
            self._hidden_depth += 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_ELEMENTS and self._hidden_depth:
            self._hidden_depth -= 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def visible_text(raw: str) -> str:
    """The text a reader sees: markup and entities resolved, links dropped, whitespace collapsed.

    Returns "" when nothing readable is left (empty, markup-only or links-only posts).
    """
    text = raw.replace("\x00", " ")
    if _MARKUP_HINT.search(text):
        collector = _TextCollector()
        collector.feed(text)
        collector.close()
        text = "".join(collector.parts)
    text = _LINK.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()
