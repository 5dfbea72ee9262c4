"""model.labels: model label ids -> sentiments, never by assuming an order."""

from __future__ import annotations

import pytest

from model.labels import FINBERT_TONE_CARD_ORDER, LabelError, sentiment_labels

UNNAMED = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_names_from_the_config_are_lowercased_in_id_order() -> None:
    assert sentiment_labels({0: "Neutral", 1: "Positive", 2: "Negative"}, "some/model") == (
        "neutral",
        "positive",
        "negative",
    )


def test_names_are_stripped() -> None:
    assert sentiment_labels({0: " NEGATIVE ", 1: "neutral", 2: "Positive"}, "m") == (
        "negative",
        "neutral",
        "positive",
    )


def test_prosusai_order_is_kept_as_is() -> None:
    # ProsusAI/finbert: 0 positive, 1 negative, 2 neutral (not finbert-tone's order).
    prosus = {0: "positive", 1: "negative", 2: "neutral"}
    assert sentiment_labels(prosus, "ProsusAI/finbert") == ("positive", "negative", "neutral")


def test_id_order_follows_the_keys_not_the_mapping_order() -> None:
    assert sentiment_labels({2: "neutral", 0: "positive", 1: "negative"}, "m") == (
        "positive",
        "negative",
        "neutral",
    )


@pytest.mark.parametrize(
    "source",
    [
        "yiyanghkust/finbert-tone",
        "yiyanghkust/finbert-tone/",
        "YiYangHKUST/FinBERT-Tone",
        "/models/finbert-tone",
        "./cache/finbert-tone/",
    ],
)
def test_unnamed_labels_of_finbert_tone_use_the_model_card_order(source: str) -> None:
    assert sentiment_labels(UNNAMED, source) == FINBERT_TONE_CARD_ORDER == ("neutral", "positive", "negative")


@pytest.mark.parametrize(
    ("id2label", "source"),
    [
        (UNNAMED, "ProsusAI/finbert"),
        (UNNAMED, "/models/my-finbert"),
        (UNNAMED, "someone/finbert-tone-finetuned"),
        ({0: "LABEL_0", 1: "LABEL_1"}, "yiyanghkust/finbert-tone"),
        ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2", 3: "LABEL_3"}, "yiyanghkust/finbert-tone"),
    ],
)
def test_unnamed_labels_otherwise_are_an_error_naming_finbert_labels(id2label, source: str) -> None:
    with pytest.raises(LabelError) as caught:
        sentiment_labels(id2label, source)
    assert "FINBERT_LABELS" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_override_replaces_the_config_names() -> None:
    assert sentiment_labels(UNNAMED, "/models/x", ["Negative", " neutral ", "POSITIVE"]) == (
        "negative",
        "neutral",
        "positive",
    )
    # The override wins over names the config does have, too.
    named = {0: "positive", 1: "negative", 2: "neutral"}
    assert sentiment_labels(named, "m", ("neutral", "positive", "negative")) == (
        "neutral",
        "positive",
        "negative",
    )


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (["neutral", "positive"], "names 2 labels but the model has 3"),
        (["neutral", "positive", "negative", "neutral"], "names 4 labels but the model has 3"),
        (["neutral", "happy", "negative"], "happy"),
        (["neutral", "neutral", "negative"], "once"),
    ],
)
def test_bad_override_is_an_error(override: list[str], fragment: str) -> None:
    with pytest.raises(LabelError) as caught:
        sentiment_labels(UNNAMED, "yiyanghkust/finbert-tone", override)
    assert fragment in str(caught.value)
    assert "FINBERT_LABELS" in str(caught.value)


@pytest.mark.parametrize(
    "id2label",
    [
        {0: "positive", 1: "negative", 2: "bullish"},
        {0: "positive", 1: "positive", 2: "neutral"},
        {0: "LABEL_0", 1: "positive", 2: "negative"},
    ],
)
def test_config_names_that_are_not_sentiments_are_an_error(id2label) -> None:
    with pytest.raises(LabelError, match="must each be one of"):
        sentiment_labels(id2label, "yiyanghkust/finbert-tone")


def test_two_label_models_map_without_neutral() -> None:
    # SST-2 style: NEGATIVE / POSITIVE.
    assert sentiment_labels(
        {0: "NEGATIVE", 1: "POSITIVE"}, "distilbert-base-uncased-finetuned-sst-2-english"
    ) == (
        "negative",
        "positive",
    )


def test_label_names_real_models_use_are_mapped() -> None:
    assert sentiment_labels({0: "Bearish", 1: "Bullish", 2: "Neutral"}, "m") == (
        "negative",
        "positive",
        "neutral",
    )
    assert sentiment_labels({0: "neg", 1: "neu", 2: "pos"}, "m") == ("negative", "neutral", "positive")


def test_twitter_roberta_unnamed_labels_use_its_card_order() -> None:
    assert sentiment_labels(UNNAMED, "cardiffnlp/twitter-roberta-base-sentiment") == (
        "negative",
        "neutral",
        "positive",
    )


@pytest.mark.parametrize(
    "id2label",
    [{0: "joy", 1: "anger", 2: "neutral"}, {0: "positive"}, {0: "positive", 1: "bullish"}],
)
def test_labels_that_cannot_be_mapped_are_refused_naming_the_setting(id2label) -> None:
    setting = "VOLFEFE_MODELS model 'emo' (option labels=)"
    with pytest.raises(LabelError) as caught:
        sentiment_labels(id2label, "someone/emotion", None, setting)
    message = str(caught.value)
    assert setting in message and "labels=negative/neutral/positive" in message and "\n" not in message
