"""workers.visible_text: what the model reads of a post."""

from __future__ import annotations

import pytest

from workers.visible_text import visible_text


def test_plain_text_is_kept_with_whitespace_collapsed() -> None:
    assert visible_text("  Stocks   rally\n\non strong\tearnings  ") == "Stocks rally on strong earnings"


def test_markup_is_removed_and_blocks_separate_words() -> None:
    raw = "<div><p>Shares <b>fall</b></p><p>after<br>weak guidance</p></div>"
    assert visible_text(raw) == "Shares fall after weak guidance"


def test_entities_are_resolved() -> None:
    assert visible_text("Profit &amp; loss &gt; forecast&nbsp;today &#36;5 &#x20AC;3") == (
        "Profit & loss > forecast today $5 €3"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "<script>alert('buy now')</script>Markets up",
        "<style>p { color: red }</style>Markets up",
        "<SCRIPT type='text/javascript'>var x = '<b>no</b>';</SCRIPT>Markets up",
        "<head><title>Page title</title></head>Markets up",
        "<noscript>enable js</noscript><template><p>hidden</p></template>Markets up",
        "<!-- a comment -->Markets up",
    ],
)
def test_invisible_content_is_dropped(raw: str) -> None:
    assert visible_text(raw) == "Markets up"


def test_links_are_removed_but_link_text_is_kept() -> None:
    raw = (
        "Read <a href='https://example.com/x'>the report</a> at https://t.co/abc?x=1 or www.example.org/p now"
    )
    assert visible_text(raw) == "Read the report at or now"


def test_link_schemes_are_matched_case_insensitively() -> None:
    assert visible_text("HTTPS://EXAMPLE.COM/A Fed cuts rates http://x.io") == "Fed cuts rates"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        " \n\t\r\n ",
        "\u00a0\u2003",
        "<p></p><br/><img src='chart.png'>",
        "<div>   </div>",
        "&nbsp;&nbsp;",
        "<script>only code</script>",
        "https://example.com/a",
        "http://a.example https://b.example/x?y=1 www.c.example",
        "<a href='https://example.com'>https://example.com</a>",
        "\x00\x00",
    ],
)
def test_nothing_readable_gives_empty_string(raw: str) -> None:
    assert visible_text(raw) == ""


def test_nul_bytes_separate_words() -> None:
    assert visible_text("Oil\x00prices\x00\x00surge") == "Oil prices surge"
    assert "\x00" not in visible_text("<p>a\x00b</p>")


@pytest.mark.parametrize(
    "raw",
    [
        "Tesla to the moon 🚀🚀",
        "株価が上昇した",
        "Die Aktien fallen stark — Gewinnwarnung",
        "Доллар дорожает",
        "الأسهم ترتفع",
        "Zürich: Börse schließt höher",
    ],
)
def test_emoji_and_non_english_text_are_kept(raw: str) -> None:
    assert visible_text(raw) == raw


def test_emoji_and_non_english_survive_markup() -> None:
    assert visible_text("<p>株価 📈</p><p>Börse</p>") == "株価 📈 Börse"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a < b and c > d", "a < b and c > d"),
        ("I <3 $TSLA", "I <3 $TSLA"),
        ("AT&T beats estimates", "AT&T beats estimates"),
        ("EPS <= 1.2", "EPS <= 1.2"),
    ],
)
def test_text_that_only_looks_like_markup_is_kept(raw: str, expected: str) -> None:
    assert visible_text(raw) == expected


def test_unclosed_head_does_not_hide_the_post() -> None:
    assert visible_text("<head>Fed cuts rates<body>stocks rally") == "Fed cuts rates stocks rally"
