"""Entity rules: cashtags, aliases and their case rules, exclude phrases, links, people; spans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entities import EntityExtractor, Mention, load_assets
from entities.mentions import Entities
from entities.settings import DEFAULT_ASSETS_FILE
from model.visible_text import read_post


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    return EntityExtractor(load_assets([DEFAULT_ASSETS_FILE]))


def found(extractor: EntityExtractor, text: str) -> list[tuple[str | None, str, str]]:
    return [(mention.symbol, mention.text, mention.method) for mention in extractor.extract(text)]


def symbols(extractor: EntityExtractor, text: str) -> set[str | None]:
    return {mention.symbol for mention in extractor.extract(text)}


def test_case_insensitive_matches_spelt_unlike_the_alias(extractor: EntityExtractor) -> None:
    # re's IGNORECASE matches "İ" for "i": the match is found by its group, not by its spelling
    assert found(extractor, "O\u0130L PRICES and Apple") == [
        ("USO", "O\u0130L PRICES", "alias"),
        ("AAPL", "Apple", "alias"),
    ]


def test_spans_are_offsets_into_the_text(extractor: EntityExtractor) -> None:
    text = "Bought $AAPL and some Tesla; the Fed meets today, oil is up."
    mentions = extractor.extract(text)
    assert [(m.symbol, m.start, m.end, m.text, m.method) for m in mentions] == [
        ("AAPL", 7, 12, "$AAPL", "cashtag"),
        ("TSLA", 22, 27, "Tesla", "alias"),
        ("TLT", 33, 36, "Fed", "alias"),
        ("USO", 50, 53, "oil", "alias"),
    ]
    assert all(text[m.start : m.end] == m.text for m in mentions)
    assert [m.kind for m in mentions] == ["equity", "equity", "rate", "commodity"]


def test_spans_are_offsets_into_the_visible_text_of_stored_html(extractor: EntityExtractor) -> None:
    raw = (
        '<p><span class="h-card"><a href="https://example.com/@apple">@<span>WSJ</span></a></span>'
        "says &amp; <b>Nvidia</b> beats.</p><p>Buy $NVDA</p>"
    )
    visible = read_post(raw).text
    entities = extractor.entities_of_posts([raw])[0]
    assert [(m.symbol, m.text) for m in entities.mentions] == [("NVDA", "Nvidia"), ("NVDA", "$NVDA")]
    assert all(visible[m.start : m.end] == m.text for m in entities.mentions)
    assert "example.com" not in visible  # the link's "apple" is not a mention: it is not visible


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$AAPL to the moon", [("AAPL", "$AAPL")]),
        ("$aapl and $Tsla", [("AAPL", "$aapl"), ("TSLA", "$Tsla")]),
        ("$BRK.B is cheap", [("BRK.B", "$BRK.B")]),
        ("$BRK-B is cheap", [("BRK.B", "$BRK-B")]),
        ("$GOOG and $BTC", [("GOOGL", "$GOOG"), ("BTC-USD", "$BTC")]),
        ("long $PLTR.", [("PLTR", "$PLTR")]),
        ("$AAPL's chart", [("AAPL", "$AAPL")]),
    ],
)
def test_cashtags(extractor: EntityExtractor, text: str, expected: list[tuple[str, str]]) -> None:
    mentions = extractor.extract(text)
    assert [(m.symbol, m.text) for m in mentions] == expected
    assert {m.method for m in mentions} == {"cashtag"}


def test_an_unlisted_cashtag_keeps_its_ticker_and_no_kind(extractor: EntityExtractor) -> None:
    [mention] = extractor.extract("$PLTR ripping")
    assert (mention.symbol, mention.kind) == ("PLTR", None)


@pytest.mark.parametrize(
    "text",
    [
        "$5 billion of investment",
        "a $5B deal",
        "tickets were $100",
        "US$20 and C$30",
        "$1T market cap",
        "costs $$$",
        "price$AAPL",  # inside a word
        "$TOOLONGX",
    ],
)
def test_money_and_non_tags_are_not_cashtags(extractor: EntityExtractor, text: str) -> None:
    assert [m for m in extractor.extract(text) if m.method == "cashtag"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Apple beats", {"AAPL"}),
        ("APPLE MUST BUILD HERE", {"AAPL"}),  # capitalised alias: as written or in capitals
        ("an apple a day", set()),
        ("grandma's apple pie", set()),
        ("Apple pie for dessert", set()),  # exclude phrase, in any case
        ("Apple's iPhone", {"AAPL"}),
        ("Meta beats", {"META"}),
        ("so meta", set()),
        ("Meta-analysis shows", set()),
        ("Target raises outlook", {"TGT"}),
        ("our target is 3%", set()),
        ("OUR TARGET IS VICTORY", set()),  # "=Target": exactly as written
        ("Interest Rates are far too high", {"TLT"}),  # lower-case alias: any case
        ("INTEREST RATES TOO HIGH", {"TLT"}),
        ("the Fed will cut", {"TLT"}),
        ("I am fed up", set()),
        ("FED UP WITH IT", set()),
        ("gold medal winner", set()),
        ("gold is up", {"GLD"}),
        ("The Golden Age", set()),
        ("GM recalls trucks", {"GM"}),
        ("gm everyone", set()),
        ("crude oil and olive oil", {"USO"}),
        ("New Mexico votes", set()),
        ("Mexico pays", {"EWW"}),
        ("the  stock\u00a0market", {"SPY"}),  # any whitespace between an alias's words
        ("AT&T and S&P 500", {"T", "SPY"}),
        ("Dow Chemical plant", set()),
        ("#Tesla @Ford", {"TSLA", "F"}),
    ],
)
def test_aliases_and_case_rules(extractor: EntityExtractor, text: str, expected: set[str]) -> None:
    assert symbols(extractor, text) == expected


def test_the_longest_alias_wins(extractor: EntityExtractor) -> None:
    assert found(extractor, "crude oil rises") == [("USO", "crude oil", "alias")]
    assert found(extractor, "S&P 500 record") == [("SPY", "S&P 500", "alias")]
    assert found(extractor, "Ford Motor Company hires") == [("F", "Ford Motor Company", "alias")]


def test_an_alias_after_a_dollar_sign_is_the_cashtag(extractor: EntityExtractor) -> None:
    assert found(extractor, "$TSLA") == [("TSLA", "$TSLA", "cashtag")]


@pytest.mark.parametrize(
    "text",
    [
        "see https://www.example.com/us/markets/apple-earnings today",
        "see www.apple.com/iphone",
        "read example.com/tesla/ford",
        "visit apple.com or tesla.com",
        "https://x.com/$AAPL",
    ],
)
def test_nothing_inside_a_link(extractor: EntityExtractor, text: str) -> None:
    assert extractor.extract(text) == []


def test_us_is_not_an_asset(extractor: EntityExtractor) -> None:
    assert extractor.extract("They laugh at us. The US and the U.S.A. will win. USA!") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Harrison Ford was great", set()),
        ("Gerald Ford pardoned Nixon", set()),
        ("Gerald R. Ford was president", set()),
        ("President Ford said", set()),
        ("Mr. Ford testified", set()),
        ("Donald Trump Tesla event at the White House", {"TSLA"}),  # no middle names looked through
        ("GERALD FORD WAS PRESIDENT", set()),
        ("Henry Ford built cars", set()),
        ("Ford recalls trucks", {"F"}),
        ("Will Apple build here?", {"AAPL"}),  # Will is not a first name here
        ("Buy Ford now", {"F"}),
        ("Ford and GM", {"F", "GM"}),
        ("Emma Goldman wrote", set()),
        ("Goldman Sachs hires", {"GS"}),
        ("Eli Lilly raises prices", {"LLY"}),  # a listed alias is not a person
    ],
)
def test_a_person_named_like_a_company(extractor: EntityExtractor, text: str, expected: set[str]) -> None:
    assert symbols(extractor, text) == expected


def test_one_sense_per_post_for_a_persons_name(extractor: EntityExtractor) -> None:
    text = "Gerald Ford pardoned Nixon. Ford said it was for the good of the country."
    assert extractor.extract(text) == []
    # a company name that is not a lone surname still counts
    assert symbols(extractor, "Harrison Ford drives a Ford Motor Company truck") == {"F"}


def test_entities_link_to_the_default_asset_when_none_is_named(extractor: EntityExtractor) -> None:
    entities = extractor.entities("Consumer confidence rebounds sharply in June")
    assert entities.mentions == ()
    assert [(link.symbol, link.kind, link.method, link.mentions) for link in entities.links] == [
        ("SPY", "etf", "default", 0)
    ]
    assert entities.is_default


def test_a_post_naming_the_default_asset_is_not_a_default_link(extractor: EntityExtractor) -> None:
    entities = extractor.entities("The Stock Market hit a record; $SPY up")
    assert [(link.symbol, link.method, link.mentions) for link in entities.links] == [("SPY", "cashtag", 2)]
    assert not entities.is_default


def test_empty_text_gets_the_default_link(extractor: EntityExtractor) -> None:
    assert extractor.entities("").symbols == ("SPY",)
    assert extractor.entities_of_posts(["<p>&nbsp;</p>"])[0].is_default


def test_links_in_order_of_first_mention_with_counts(extractor: EntityExtractor) -> None:
    entities = extractor.entities("China tariffs! China must pay. Apple and $AAPL too.")
    assert [(link.symbol, link.method, link.mentions) for link in entities.links] == [
        ("FXI", "alias", 2),
        ("SPY", "alias", 1),
        ("AAPL", "cashtag", 2),
    ]


def test_the_default_asset_is_configurable(tmp_path: Path) -> None:
    assets = load_assets([DEFAULT_ASSETS_FILE])
    entities = EntityExtractor(assets, default_asset="QQQ").entities("nothing here")
    assert [(link.symbol, link.method) for link in entities.links] == [("QQQ", "default")]


def test_entities_are_json_and_round_trip(extractor: EntityExtractor) -> None:
    entities = extractor.entities("Apple and the Fed")
    stored = json.loads(json.dumps(entities.to_json()))
    assert stored == {
        "schema": 1,
        "mentions": [
            {
                "symbol": "AAPL",
                "kind": "equity",
                "start": 0,
                "end": 5,
                "text": "Apple",
                "method": "alias",
                "score": None,
            },
            {
                "symbol": "TLT",
                "kind": "rate",
                "start": 14,
                "end": 17,
                "text": "Fed",
                "method": "alias",
                "score": None,
            },
        ],
        "links": [
            {"symbol": "AAPL", "kind": "equity", "method": "alias", "mentions": 1},
            {"symbol": "TLT", "kind": "rate", "method": "alias", "mentions": 1},
        ],
        "assets_version": extractor.assets_version,
        "ner_model": None,
    }
    assert Entities.from_json(stored) == entities


def test_long_posts_and_many_vetoes(extractor: EntityExtractor) -> None:
    text = ("Apple and the Fed, oil and gold, Harrison Ford and $TSLA. " * 2000).strip()
    mentions = extractor.extract(text)
    assert len(mentions) == 2000 * 5
    assert all(isinstance(mention, Mention) for mention in mentions)
    assert extractor.extract("apple pie and Apple Pie. " * 4000) == []
    assert extractor.extract("see apple.com/x and https://t.co/Ford " * 2500) == []


def test_trying_aliases_only_where_one_can_begin_finds_what_a_full_scan_finds(
    extractor: EntityExtractor,
) -> None:
    """The word prefilter of RuleMatcher gives the same matches as the alias pattern tried everywhere."""
    import json
    from pathlib import Path

    matcher = extractor._rules
    posts = Path(__file__).with_name("fixtures") / "entities_posts.jsonl"
    texts = [json.loads(line)["text"] for line in posts.read_text().splitlines() if line.strip()]
    texts += ["O\u0130L and oil; the Fed's rates", "S&P 500 and Dow", "_Apple $Tesla Apple-pie Coca-Cola"]
    for text in texts:
        full = [(m.span(), m.lastgroup) for m in matcher._aliases.finditer(text)]
        assert [(m.span(), m.lastgroup) for m in matcher._alias_matches(text)] == full, text
