"""The optional NER model, loaded through the product's loader from tiny models the tests build:
a random one (any tags: the invariants hold), and one with tags planted on chosen words (the exact
spans are known, so resolution, unlinked organisations and person vetoes are checked end to end
through the real transformers pipeline)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from entities import EntityExtractor, EntitySettings, Mention, load_assets
from entities.ner import EntityRecognizer
from entities.settings import DEFAULT_ASSETS_FILE
from model.engines import ModelLoadError
from model.visible_text import read_post

SAMPLE_POSTS = Path(__file__).resolve().parent.parent / "data" / "sample_posts.csv"


@pytest.fixture(scope="module")
def planted(planted_token_model_dir: Path) -> EntityExtractor:
    return EntityExtractor.from_settings(EntitySettings(ner_model=str(planted_token_model_dir)))


@pytest.fixture(scope="module")
def rules_only() -> EntityExtractor:
    return EntityExtractor(load_assets([DEFAULT_ASSETS_FILE]))


def model_mentions(mentions: list[Mention]) -> list[tuple[str | None, str, str]]:
    return [(m.symbol, m.text, m.method) for m in mentions]


def test_an_organisation_the_list_lacks_is_kept_unlinked(planted: EntityExtractor) -> None:
    text = "Shares of Acme Widgets jumped"
    entities = planted.entities(text)
    assert entities.mentions == (Mention(None, None, 10, 22, "Acme Widgets", "model", 1.0),)
    assert [(link.symbol, link.method) for link in entities.links] == [("SPY", "default")]
    assert entities.ner_model == planted.recognizer.source


def test_an_organisation_resolved_to_the_list_is_a_model_mention(
    planted_token_model_dir: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("symbol,name,kind\nACME,Acme Widgets Inc,equity\n", encoding="utf-8")
    extractor = EntityExtractor.from_settings(
        EntitySettings((DEFAULT_ASSETS_FILE, extra), str(planted_token_model_dir), "SPY")
    )
    entities = extractor.entities("Shares of Acme Widgets jumped")
    assert model_mentions(list(entities.mentions)) == [("ACME", "Acme Widgets", "model")]
    assert [(link.symbol, link.kind, link.method, link.mentions) for link in entities.links] == [
        ("ACME", "equity", "model", 1)
    ]


def test_a_misspelt_company_resolves_fuzzily(planted: EntityExtractor, rules_only: EntityExtractor) -> None:
    text = "Wallmart prices are way up"
    assert rules_only.extract(text) == []
    assert model_mentions(planted.extract(text)) == [("WMT", "Wallmart", "model")]


def test_the_rules_mention_stands_where_the_model_also_finds_the_name(planted: EntityExtractor) -> None:
    assert model_mentions(planted.extract("Microsoft Corp beat estimates")) == [
        ("MSFT", "Microsoft", "alias")
    ]


def test_a_person_span_vetoes_an_equity_alias(planted: EntityExtractor, rules_only: EntityExtractor) -> None:
    text = "Betsy Ford buys a house in Ohio"
    assert model_mentions(rules_only.extract(text)) == [
        ("F", "Ford", "alias")
    ]  # Betsy: not in the names list
    assert planted.extract(text) == []
    assert planted.entities(text).is_default


def test_an_organisation_the_rules_refused_does_not_link_to_that_asset(planted: EntityExtractor) -> None:
    # the rules read "Emma Goldman" as a person; a model calling "Goldman" an organisation does not
    # bring Goldman Sachs back
    assert model_mentions(planted.extract("Emma Goldman wrote a book")) == [(None, "Goldman", "model")]


def test_an_organisation_in_a_domain_name_is_no_mention(planted: EntityExtractor) -> None:
    assert model_mentions(planted.extract("Acme Widgets: see acme.com today")) == [
        (None, "Acme Widgets", "model")
    ]


def test_a_text_longer_than_the_model_is_read_to_its_end(planted: EntityExtractor) -> None:
    text = "the market is up and " * 60 + "Initech fell"
    assert len(planted.recognizer._pipeline.tokenizer(text)["input_ids"]) > 128
    [mention] = planted.extract(text)
    assert (mention.start, mention.text, mention.symbol) == (text.index("Initech"), "Initech", None)


def test_offsets_are_into_the_visible_text_of_html(planted: EntityExtractor) -> None:
    raw = "<p>Big news: <b>Acme&nbsp;Widgets</b> &amp; <i>Microsoft</i> merge!</p>"
    visible = read_post(raw).text
    entities = planted.entities_of_posts([raw])[0]
    assert [(m.symbol, m.text, m.method) for m in entities.mentions] == [
        (None, "Acme Widgets", "model"),
        ("MSFT", "Microsoft", "alias"),
    ]
    assert all(visible[m.start : m.end] == m.text for m in entities.mentions)


def test_a_batch_gives_what_each_text_gives_alone(planted: EntityExtractor) -> None:
    texts = ["Acme Widgets and Apple", "", "Wallmart", "nothing here", "Emma Goldman"]
    assert planted.extract_many(texts) == [planted.extract(text) for text in texts]


def test_the_random_model_keeps_the_invariants_on_the_sample_posts(
    tiny_token_model_dir: Path, rules_only: EntityExtractor
) -> None:
    extractor = EntityExtractor.from_settings(EntitySettings(ner_model=str(tiny_token_model_dir)))
    with SAMPLE_POSTS.open(newline="", encoding="utf-8") as handle:
        raws = [row["text"] for row in csv.DictReader(handle)]
    texts = [read_post(raw).text for raw in raws]
    all_entities = extractor.entities_of_posts(raws)
    people = extractor.recognizer.recognize(texts)
    model_found = 0
    for text, entities, spans in zip(texts, all_entities, people, strict=True):
        json.dumps(entities.to_json())
        for mention in entities.mentions:
            assert text[mention.start : mention.end] == mention.text
            if mention.method == "model":
                model_found += 1
                assert mention.symbol is None or mention.symbol in extractor.assets
                assert 0.5 <= mention.score <= 1
        persons = [span for span in spans if span.label == "PER"]
        for mention in rules_only.extract(text):  # every rule mention stays, unless a person span vetoes it
            vetoed = mention.kind == "equity" and any(
                s.start <= mention.start and mention.end <= s.end for s in persons
            )
            assert (mention in entities.mentions) != vetoed
        assert entities.links  # a link always: a named asset or the default
    assert model_found > 0  # the random model tags something, so the model path ran


@pytest.mark.parametrize(
    ("source", "beginning"),
    [
        ("./no/such/ner-model", "no such folder; set VOLFEFE_NER_MODEL"),
        # tests run with HF_HUB_OFFLINE=1 (tests/conftest.py): the loader must not try the network
        ("volfefe-tests/no-such-ner-model", "the model hub"),
    ],
)
def test_a_model_that_cannot_load_is_one_line(source: str, beginning: str) -> None:
    with pytest.raises(ModelLoadError) as caught:
        EntityRecognizer.load(source)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot load VOLFEFE_NER_MODEL={source!r}: {beginning}")


def test_a_model_without_organisation_tags_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        EntityRecognizer.load(str(tiny_model_dir))  # the sentiment model: Neutral, Positive, Negative
    assert str(caught.value) == (
        f"cannot use VOLFEFE_NER_MODEL={str(tiny_model_dir)!r}: it has no organisation tag (ORG) among its "
        "labels ['Negative', 'Neutral', 'Positive']; use a named-entity model"
    )
