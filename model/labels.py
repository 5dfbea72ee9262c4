"""The one place that turns a model's label ids into sentiments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from db.models import SENTIMENTS
from errors import VolfefeError

#: the label order on the finbert-tone model card, for its first upload whose config names none.
FINBERT_TONE_CARD_ORDER = ("neutral", "positive", "negative")
_UNNAMED = re.compile(r"^label_\d+$")


class LabelError(VolfefeError, ValueError):
    """The model's labels cannot be read as positive / negative / neutral."""


def sentiment_labels(
    id2label: Mapping[int, str], source: str, override: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Sentiment names in label-id order, from ``FINBERT_LABELS``, the model config, or the model card.

    Never assumes an order: ProsusAI/finbert and finbert-tone order their labels differently.
    """
    count = len(id2label)
    if override:
        names = tuple(name.strip().lower() for name in override)
        if len(names) != count:
            raise LabelError(f"FINBERT_LABELS names {len(names)} labels but the model has {count}")
        origin = "FINBERT_LABELS"
    else:
        names = tuple(str(id2label[index]).strip().lower() for index in range(count))
        origin = "the model config"
        if all(_UNNAMED.match(name) for name in names):
            if count == 3 and source.rstrip("/").lower().endswith("finbert-tone"):
                return FINBERT_TONE_CARD_ORDER
            raise LabelError(
                f"the model config names no labels ({', '.join(names)}); "
                "set FINBERT_LABELS to the sentiments in id order, e.g. FINBERT_LABELS=neutral,positive,negative"
            )
    unknown = [name for name in names if name not in SENTIMENTS]
    if unknown or len(set(names)) != count:
        raise LabelError(
            f"labels from {origin} ({', '.join(names)}) must each be one of {', '.join(SENTIMENTS)}, once"
        )
    return names
