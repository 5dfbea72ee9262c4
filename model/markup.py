"""The text a browser shows of a piece of HTML, read in one forward pass (time linear in the input).

Why not a parser library: a full HTML parser builds a tree, and tree building is quadratic on
adversarial input in every parser we measured (lxml 6.1 / libxml2 2.14 and selectolax 1.0 / lexbor:
unmatched end tags under deep nesting, misnested formatting elements: 1-2 s for 100 KB, 77-420 s for
1 MB); Python 3.11's ``html.parser`` is quadratic in its tokenizer (60 KB of unclosed ``<a `` tags:
123 s). Visible text needs no tree, only the HTML5 tokenizer's view of where tags, comments and text
are, so this module tokenizes with anchored regular expressions whose repetitions are possessive
(they never backtrack): each character is examined a bounded number of times.

What is followed from the HTML5 tokenizer: a ``<`` that starts no tag is text; a tag, comment or
quoted attribute value left open at the end of the input swallows the rest (browsers show nothing of
it); ``script``, ``style`` and the other raw-text elements end only at their own end tag; character
references are resolved in text. What is simplified: no tree is built, so the end of a hidden element
is found by counting start and end tags of its name (exact for the elements posts use: ``span``,
``div``, ``template``).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cache

#: elements whose content a reader never sees, read as raw text up to their own end tag.
#: (``noscript``: browsers run scripts, so they hide it; ``title`` shows in the tab, not the page.)
_HIDDEN_RAW_TEXT = frozenset({"script", "style", "title", "noscript", "iframe", "noembed", "noframes"})
#: raw-text elements whose content is shown (``textarea`` also resolves character references).
_SHOWN_RAW_TEXT = frozenset({"xmp", "textarea"})
#: elements hidden with everything inside them.
_HIDDEN_ELEMENTS = frozenset({"template"})
#: elements that cannot have content (their start tag never opens a hidden region).
_VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
#: elements a browser lays out apart from their neighbours (block boxes, line breaks, cells, images):
#: the words on either side of them are separate words.
_SEPARATING_ELEMENTS = frozenset(
    {
        "address",
        "article",
        "aside",
        "audio",
        "blockquote",
        "body",
        "br",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "img",
        "legend",
        "li",
        "main",
        "menu",
        "nav",
        "ol",
        "option",
        "p",
        "picture",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "video",
    }
    | {"h1", "h2", "h3", "h4", "h5", "h6"}
)
#: the class Truth Social (and Mastodon) gives the inline copy of a quoted post's link.
QUOTE_CLASS = "quote-inline"

#: marks where a link (``<a>``) starts and ends in the collected text; resolved by ``_link_edges``.
_LINK_START = "\x01"
_LINK_END = "\x02"
#: characters that attach to the word before them: no space is put between a link and them.
_ATTACHES_LEFT = frozenset(".,;:!?)]}'\"’”…%")
#: characters that attach to the word after them: no space is put between them and a link.
_ATTACHES_RIGHT = frozenset("([{'\"‘“")

# One token at a "<". Every repetition is possessive or atomic, so a failed match gives nothing
# back: a match costs the characters it covers, and a failure at "<" costs a few. Groups are repeated
# inside an atomic group, not possessively ("(?:...)*+"), which Python 3.11.2 (Debian 12's) gets wrong.
_TOKEN = re.compile(
    r"""
      (?P<comment> <!-- (?> -?> | (?s:.*?) (?: --!?> | \Z ) ) )
    | (?P<bogus> (?: <[!?] | </(?![A-Za-z>]) ) [^>]*+ (?: > | \Z ) )
    | </>
    | < (?P<end>/)? (?P<name>[A-Za-z][^\t\n\f\r\x20/>]*+)
        (?P<attributes>
          (?> (?> [^>"'=]++
            | = [\t\n\f\r\x20]*+ (?> "[^"]*+ (?:"|\Z) | '[^']*+ (?:'|\Z) | )
            | ["']
          )* )
        )
        (?P<close> > | \Z )
    """,
    re.VERBOSE,
)
_ATTRIBUTE = re.compile(
    r"""([^\t\n\f\r\x20/>=][^\t\n\f\r\x20/>=]*+)"""
    r"""(?:[\t\n\f\r\x20]*+=[\t\n\f\r\x20]*+(?:"([^"]*+)"?|'([^']*+)'?|([^\t\n\f\r\x20>]*+)))?"""
)
_DISPLAY_NONE = re.compile(r"display\s*+:\s*+none", re.IGNORECASE)
_LINK_EDGES = re.compile(f"[{_LINK_START}{_LINK_END}]++")
# A tag a post's author would type or an exporter would write: text without one is not read as HTML.
_LOOKS_LIKE_HTML = re.compile(
    r"<(?:!--|/?(?:a|abbr|b|blockquote|body|br|code|del|div|em|h[1-6]|head|hr|html|i|img|ins|li|"
    r"noscript|ol|p|pre|q|s|script|small|span|strong|style|sub|sup|table|td|template|th|title|tr|"
    r"u|ul)(?=[\t\n\f\r\x20/>])[^<>]*+>)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MarkupText:
    """What a reader sees of a piece of HTML."""

    #: the shown text, character references resolved; whitespace as it came (not collapsed).
    text: str
    #: an element of class ``quote-inline`` (a quoted post's link) was dropped.
    has_quote: bool


def looks_like_html(text: str) -> bool:
    """Whether ``text`` holds a complete tag of a common element, or a comment.

    Plain posts may contain ``<`` (``I <3 $TSLA``, ``x<y``): only text with real markup is read as
    HTML, where an unclosed ``<y ...`` would hide the rest.
    """
    return _LOOKS_LIKE_HTML.search(text) is not None


@cache
def _raw_text_end(name: str) -> re.Pattern[str]:
    """Where the raw text of element ``name`` ends: its end tag (HTML5: ``</name`` then space, / or >)."""
    return re.compile(rf"</{re.escape(name)}(?=[\t\n\f\r\x20/>])", re.IGNORECASE)


def _hides(attributes: str) -> tuple[bool, bool]:
    """(the element is hidden, it is a quote's inline link) from a start tag's attribute text."""
    hidden = quote = False
    for match in _ATTRIBUTE.finditer(attributes):
        name = match.group(1).lower()
        value = html.unescape(match.group(2) or match.group(3) or match.group(4) or "")
        if name == "hidden":
            hidden = True
        elif name == "class" and QUOTE_CLASS in value.split():
            hidden = quote = True
        elif name == "style" and _DISPLAY_NONE.search(value):
            hidden = True
    return hidden, quote


def read_markup(source: str) -> MarkupText:
    """The text a browser shows of ``source``, with the separations its layout makes.

    Dropped: tags, comments, the content of ``script``/``style``/``title``/``noscript``/``template``
    and of any element that is ``hidden``, styled ``display: none`` or of class ``quote-inline``.
    A space is put where a block element, ``br`` or an image separates words, and around a link
    (``<a>``) unless punctuation attaches to it: exports drop the space after a mention
    (``@<span>WhiteHouse</span></a></span>President``), yet a reader sees two words.
    """
    parts: list[str] = []
    hidden_name: str | None = None  # the element whose hidden content is being skipped
    hidden_depth = 0
    has_quote = False
    position, length = 0, len(source)
    while position < length:
        tag_start = source.find("<", position)
        if tag_start < 0:
            tag_start = length
        if tag_start > position:
            if hidden_name is None:
                parts.append(html.unescape(source[position:tag_start]))
            position = tag_start
            continue
        token = _TOKEN.match(source, position)
        if token is None:  # a "<" that starts nothing is text
            if hidden_name is None:
                parts.append("<")
            position += 1
            continue
        position = token.end()
        name = token.group("name")
        if name is None:  # a comment, a bogus comment, "</>"
            continue
        if token.group("close") != ">":  # end of input inside a tag: the tag is never shown
            break
        name = name.lower()
        if token.group("end"):
            if hidden_name is not None:
                if name == hidden_name:
                    hidden_depth -= 1
                    if hidden_depth == 0:
                        hidden_name = None
                continue
        else:
            if name in _HIDDEN_RAW_TEXT or name in _SHOWN_RAW_TEXT:
                end = _raw_text_end(name).search(source, position)
                content_end = end.start() if end else length
                if hidden_name is None and name in _SHOWN_RAW_TEXT:
                    content = source[position:content_end]
                    parts.append(html.unescape(content) if name == "textarea" else content)
                position = content_end
                continue
            if name == "plaintext":  # the rest of the input is text
                if hidden_name is None:
                    parts.append(source[position:])
                break
            if hidden_name is not None:
                if name == hidden_name:
                    hidden_depth += 1
                continue
            if name not in _VOID_ELEMENTS:
                hidden, quote = _hides(token.group("attributes"))
                if hidden or name in _HIDDEN_ELEMENTS:
                    hidden_name, hidden_depth = name, 1
                    has_quote = has_quote or quote
                    continue
        if name == "a":
            parts.append(_LINK_END if token.group("end") else _LINK_START)
        elif name in _SEPARATING_ELEMENTS:
            parts.append(" ")
    return MarkupText(_link_edges("".join(parts)), has_quote)


def _link_edges(text: str) -> str:
    """Resolve link edges: a space between a link and a word next to it, nothing elsewhere."""

    def edge(match: re.Match[str]) -> str:
        before = text[match.start() - 1] if match.start() > 0 else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if before.isspace() or after.isspace():
            return ""
        edges = match.group()
        if _LINK_START not in edges and after in _ATTACHES_LEFT:
            return ""
        if _LINK_END not in edges and before in _ATTACHES_RIGHT:
            return ""
        return " "

    return _LINK_EDGES.sub(edge, text)
