"""What the model reads of a post: the words a reader sees, in order, and what the post is.

``read_post(raw)`` returns a ``PostText``: the text to classify and the facts about it (its length,
whether the input was cut at ``MAX_POST_CHARS``, whether it quotes or reposts another post). Every
step runs in time linear in the input, and the input is cut at ``MAX_POST_CHARS`` first, so one post
can never stall a batch.

The rules, with what a reader expects and why:

- **Markup.** Text with real tags (``<p>``, ``<span>``, ...) is read as HTML (``model.markup``):
  tags and comments dropped, character references resolved, invisible elements (``script``,
  ``style``, ``title``, ``template``, anything ``hidden``) dropped, and words that the layout
  separates kept apart: block elements, ``<br>`` and links (``<a>``) separate words. Truth Social
  exports write a mention with no space after it (``@<span>WhiteHouse</span></a></span>President``);
  a reader sees ``@WhiteHouse President``. Plain text (a tweet, a headline) is read as it is, with
  ``&amp;``-style references resolved (tweet exports escape ``&``, ``<`` and ``>``), so ``x<y`` or
  ``I <3 $TSLA`` stay words.
- **Quote posts.** Truth Social appends the quoted post's link as
  ``<span class="quote-inline"><br/>RT: https://truthsocial.com/...</span>`` (in plain-text exports:
  ``RT: https://...``). A reader sees the poster's own words above a card of the quoted post, so the
  poster's words are classified, the ``RT:`` and link are dropped, and ``is_quote`` is set. A post
  that is only a quote has no words of its own: its text is empty (``no_text_to_classify``).
- **Reposts.** ``RT @user: their words`` carries someone else's words, which is what the post says:
  they are classified (the ``RT`` marker dropped, ``@user`` kept as the name a reader sees) and
  ``is_repost`` is set. A repost with nothing after ``@user`` has no words to classify.
- **Links.** Web links (``https://...``, ``www....``, ``t.co/...``: a domain with a path) and tweet
  picture links (``pic.twitter.com/...``, also when glued to the word before, as tweet archives write
  them: ``@Varneycopic.twitter.com/2bUbA7zSFM`` reads ``@Varneyco``) are dropped: a reader sees a
  card or a picture, not words. A bare domain without a path (``CNN.com``) is a name and stays.
- **Cut links.** Archives cut long links and retweets with ``…``. What is left where a link was cut
  is dropped: an ellipsis standing alone next to a link, and a link's start cut short (``htt…``,
  ``https:/...``). An ellipsis attached to a word (``coming...``) is the author's and stays.
- **Unicode.** NFKC normalisation, so styled letters (mathematical bold ``𝗣𝗿𝗲𝘀𝗶𝗱𝗲𝗻𝘁``, full-width
  ``Ｓｔｏｃｋｓ``) read as the letters a reader sees; invisible format characters (zero-width spaces
  and joiners, soft hyphens, direction marks, byte order marks) and control characters dropped
  (controls and NUL separate words, format characters join them, as on screen). ``…`` reads ``...``.
- **Mentions and hashtags** (``@user``, ``#MAGA``, ``$TSLA``) are words a reader sees: kept.
- **Whitespace** collapsed to single spaces. Text with nothing readable left is ``""``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from model.markup import looks_like_html, read_markup

#: characters of a post that are read; the rest is not (and ``PostText.cut`` says so). Far beyond
#: what the model reads (512 tokens are about 2,500 characters): only runaway posts are cut.
MAX_POST_CHARS = 100_000
#: combining marks kept in a row before a combining grapheme joiner is put between them (the
#: Stream-Safe Text Format of Unicode UAX #15): NFKC sorts each run of marks, quadratic in its length.
MAX_COMBINING_MARKS = 30

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_COMBINING_GRAPHEME_JOINER = "\u034f"
# A reference with its ";" (plain text: "AT&T", "&notably" stay as written).
_PLAIN_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}+|#[xX][0-9a-fA-F]{1,6}+|[A-Za-z][A-Za-z0-9]{1,31}+);")
#: where a link was: replaced by a marker first, so that what was next to a link can be found.
_LINK_MARK = "\x00"
_LINK = re.compile(
    r"(?:https?|ftp)://\S*+"  # a web link (with its own "…" when it was cut)
    r"|pic\.twitter\.com/\S*+"  # a tweet's picture, glued to the word before or not
    r"|(?<![\w.])www\.\S++"
    # a domain with a path: t.co/x, cnn.com/a. An atomic group, not a possessive one ("(?:...)++"):
    # Python 3.11.2 (Debian 12's) never matches that one; 3.11.7 does.
    r"|(?<![\w.@/-])(?>(?:[a-z0-9-]++\.)+)[a-z]{2,}+/\S*+",
    re.IGNORECASE,
)
#: punctuation that ends a sentence or closes a bracket after a link: the sentence's, not the link's.
_AFTER_LINK = ".,;:!?'\")]}"
_BRACKETED_LINK = re.compile(rf"\(\s*+{_LINK_MARK}\s*+\)|\[\s*+{_LINK_MARK}\s*+\]")
_QUOTE_LINK = re.compile(rf"(?<!\S)RT:\s*+{_LINK_MARK}")
_ELLIPSIS_BY_LINK = re.compile(rf"(?<!\S)\.{{2,}}+\s*+(?={_LINK_MARK})|(?<={_LINK_MARK})\s*+\.{{2,}}+(?!\S)")
_CUT_LINK_START = re.compile(
    r"(?<!\S)(?:https?:/{0,2}+|https?|htt|ht|h|www\.?|ww|w)\.{2,}+(?!\S)", re.IGNORECASE
)
_WHITESPACE = re.compile(rf"[\s{_LINK_MARK}]++")
_REPOST = re.compile(r"RT (?=@\w)")
_ATTRIBUTION_ONLY = re.compile(r"@\w++:?")


@dataclass(frozen=True)
class PostText:
    """What the model reads of one post, and the facts a classification records about it."""

    #: the words a reader sees, in order, single-spaced; "" when nothing is left to classify.
    text: str
    #: ``len(text)``.
    chars: int
    #: characters of the stored post (before the cut).
    input_chars: int
    #: the post was longer than the cap: only its first ``MAX_POST_CHARS`` characters were read.
    cut: bool
    #: the post quotes another post (whose link was dropped): only the poster's words are read.
    is_quote: bool
    #: the post reposts another's words (``RT @user ...``): those words are read.
    is_repost: bool


def read_post(raw: str, max_chars: int = MAX_POST_CHARS) -> PostText:
    """The visible text of the stored post ``raw``, read under the rules of this module's docstring.

    At most ``max_chars`` characters of ``raw`` are read (``cut`` says whether that dropped any).
    """
    cut = len(raw) > max_chars
    source = _CONTROLS.sub(" ", raw[:max_chars] if cut else raw)
    is_quote = False
    if looks_like_html(source):
        markup = read_markup(source)
        text, is_quote = markup.text, markup.has_quote
    else:
        text = _PLAIN_REFERENCE.sub(lambda reference: html.unescape(reference.group()), source)
    text = _normalize_unicode(text)
    text = _LINK.sub(_mark_link, text)
    text = _BRACKETED_LINK.sub(_LINK_MARK, text)
    text, quote_links = _QUOTE_LINK.subn(_LINK_MARK, text)
    text = _ELLIPSIS_BY_LINK.sub("", text)
    text = _CUT_LINK_START.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    repost = _REPOST.match(text)
    if repost:
        text = text[repost.end() :]
        if _ATTRIBUTION_ONLY.fullmatch(text):
            text = ""
    return PostText(
        text=text,
        chars=len(text),
        input_chars=len(raw),
        cut=cut,
        is_quote=is_quote or quote_links > 0,
        is_repost=repost is not None,
    )


def visible_text(raw: str) -> str:
    """``read_post(raw).text``: the words a reader sees of the post ``raw``."""
    return read_post(raw).text


def _mark_link(link: re.Match[str]) -> str:
    """The link replaced by a marker; punctuation after it that is not part of it is kept.

    A ")" stays with the link while the link has an unmatched "(" (``.../Tariff_(economics)``).
    """
    core = link.group()
    unmatched_closes = core.count(")") - core.count("(")
    end = len(core)
    while end > 0 and core[end - 1] in _AFTER_LINK:
        if core[end - 1] == ")":
            if unmatched_closes <= 0:
                break
            unmatched_closes -= 1
        end -= 1
    return _LINK_MARK + core[end:]


def _normalize_unicode(text: str) -> str:
    """NFKC, with format characters dropped; runs of combining marks bounded first (UAX #15)."""
    if text.isascii():
        return text
    text = _overlong_marks().sub(rf"\1{_COMBINING_GRAPHEME_JOINER}", text)
    return unicodedata.normalize("NFKC", text).translate(_invisible_characters())


#: planes that hold every combining mark and format character (Unicode 14, Python 3.11's
#: ``unicodedata``; tests/test_visible_text.py checks it against the whole code space).
_MARK_PLANES = (range(0x20000), range(0xE0000, 0xE1000))
#: characters of combining class 0 whose decomposition starts with a combining mark (UAX #15's
#: "non-starter decompositions"): they lengthen runs of marks too.
_NON_STARTER_DECOMPOSITIONS = "\u0f73\u0f75\u0f81\uff9e\uff9f"


@cache
def _overlong_marks() -> re.Pattern[str]:
    marks = [chr(code) for plane in _MARK_PLANES for code in plane if unicodedata.combining(chr(code))]
    marks_class = "[" + re.escape("".join(marks) + _NON_STARTER_DECOMPOSITIONS) + "]"
    return re.compile(f"({marks_class}{{{MAX_COMBINING_MARKS}}})(?={marks_class})")


@cache
def _invisible_characters() -> dict[int, None]:
    """Format characters (category Cf) and the combining grapheme joiner, mapped to nothing."""
    invisible = {
        code: None for plane in _MARK_PLANES for code in plane if unicodedata.category(chr(code)) == "Cf"
    }
    invisible[ord(_COMBINING_GRAPHEME_JOINER)] = None
    return invisible
