"""The one place that turns a model's label ids into sentiments.

Real models disagree on order and names: finbert-tone is Neutral/Positive/Negative, ProsusAI/finbert
positive/negative/neutral, cardiffnlp's twitter-roberta-base-sentiment has ``LABEL_0..2`` with no
names (its card: negative, neutral, positive), and two-label models (SST-2: NEGATIVE/POSITIVE) have no
neutral. Every label is mapped explicitly, never by position; a model whose labels cannot be mapped is
refused with one line saying how to map them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from db.models import SENTIMENTS
from errors import VolfefeError

#: the label order on the finbert-tone model card, for its first upload whose config names none.
FINBERT_TONE_CARD_ORDER = ("neutral", "positive", "negative")
#: the label order on the card of cardiffnlp/twitter-roberta-base-sentiment, whose config names none.
TWITTER_ROBERTA_CARD_ORDER = ("negative", "neutral", "positive")
#: models whose config names no labels but whose card gives their order (source suffix -> order).
CARD_ORDERS = {
    "finbert-tone": FINBERT_TONE_CARD_ORDER,
    "twitter-roberta-base-sentiment": TWITTER_ROBERTA_CARD_ORDER,
}
#: label names real models use for a sentiment (lower-case).
SYNONYMS = {
    "positive": "positive",
    "pos": "positive",
    "bullish": "positive",
    "negative": "negative",
    "neg": "negative",
    "bearish": "negative",
    "neutral": "neutral",
    "neu": "neutral",
}
_UNNAMED = re.compile(r"^label_\d+$")


class LabelError(VolfefeError, ValueError):
    """The model's labels cannot be read as positive / negative / neutral."""


def sentiment_labels(
    id2label: Mapping[int, str],
    source: str,
    override: Sequence[str] | None = None,
    setting: str = "FINBERT_LABELS",
) -> tuple[str, ...]:
    """Sentiment names in label-id order, from ``override``, the model config, or the model card.

    Each label maps onto one sentiment, each sentiment at most once; a model may lack neutral (two
    labels). ``setting`` names where an override is written, for the error message.
    """
    count = len(id2label)
    example = (
        "e.g. FINBERT_LABELS=neutral,positive,negative"
        if setting == "FINBERT_LABELS"
        else ("e.g. name=source;labels=negative/neutral/positive")
    )
    if override:
        names = tuple(name.strip().lower() for name in override)
        if len(names) != count:
            raise LabelError(f"{setting} names {len(names)} labels but the model has {count}")
        origin = setting
    else:
        names = tuple(str(id2label[index]).strip().lower() for index in range(count))
        origin = "the model config"
        if all(_UNNAMED.match(name) for name in names):
            card = _card_order(source)
            if card is not None and len(card) == count:
                return card
            raise LabelError(
                f"the model config names no labels ({', '.join(names)}); "
                f"set {setting} to the sentiments in id order, {example}"
            )
    mapped = tuple(SYNONYMS.get(name) for name in names)
    unknown = [name for name, sentiment in zip(names, mapped, strict=True) if sentiment is None]
    if unknown or len(set(mapped)) != count or count < 2:
        raise LabelError(
            f"labels from {origin} ({', '.join(names)}) must each be one of {', '.join(SENTIMENTS)}, once "
            f"(at least two); set {setting} to map them, {example}"
        )
    return tuple(sentiment for sentiment in mapped if sentiment is not None)


def _card_order(source: str) -> tuple[str, ...] | None:
    name = source.rstrip("/").lower()
    for suffix, order in CARD_ORDERS.items():
        if name.endswith(suffix):
            return order
    return None
