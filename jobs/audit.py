"""How each classification was made: the audit stored in its ``meta``.

Asked for by the people who run this system after their first real batch: for any stored
classification, what exactly was read, how sure the model was, and which worker, engine, precision
and attempt produced it. The shape (every key always present):

    raw_scores   {label: probability}
    text         characters, input_characters, cut (the post was longer than the reading cap),
                 tokens, windows, quote, repost, sha256 (of the text the model read)
    quality      margin (top score minus the second), entropy (nats; 0 = certain, ln 3 = no idea)
    processing   classified_at (UTC, ISO 8601), model_seconds (per item), attempt, worker,
                 engine, precision, model_version, model (its name in VOLFEFE_MODELS),
                 batch (enqueued_at, items, forward_passes: of this model's passes)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.classifier import Prediction

#: margin between the two best scores under which a classification counts as uncertain.
LOW_MARGIN = 0.2


@dataclass(frozen=True)
class TextFacts:
    """What was read of a post (from its visible text)."""

    text: str
    input_characters: int
    cut: bool = False
    quote: bool = False
    repost: bool = False


@dataclass(frozen=True)
class Processing:
    """Who classified it and how."""

    worker: str
    engine: str
    precision: str
    model_version: str
    attempt: int = 1
    #: the batch it was read in: ``enqueued_at`` (its job's latest enqueue, ISO 8601 UTC; None outside the
    #: queue), ``items`` (texts classified together), ``forward_passes`` (rows of each forward pass).
    batch: Mapping[str, Any] | None = None
    #: the model's name in VOLFEFE_MODELS.
    model: str | None = None


def margin(scores: dict[str, float]) -> float:
    """Top score minus the second: small means the model hesitated between two sentiments."""
    ranked = sorted(scores.values(), reverse=True)
    return ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0] if ranked else 0.0


def entropy(scores: dict[str, float]) -> float:
    return -sum(p * math.log(p) for p in scores.values() if p > 0)


def audit(prediction: Prediction, facts: TextFacts, processing: Processing) -> dict[str, Any]:
    """The ``meta`` document of one classification."""
    return {
        "raw_scores": prediction.raw_scores,
        "text": {
            "characters": len(facts.text),
            "input_characters": facts.input_characters,
            "cut": facts.cut,
            "tokens": prediction.tokens,
            "windows": prediction.windows,
            "quote": facts.quote,
            "repost": facts.repost,
            "sha256": hashlib.sha256(facts.text.encode("utf-8")).hexdigest(),
        },
        "quality": {
            "margin": round(margin(prediction.raw_scores), 6),
            "entropy": round(entropy(prediction.raw_scores), 6),
        },
        "processing": {
            "classified_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model_seconds": round(prediction.seconds, 6),
            "attempt": processing.attempt,
            "worker": processing.worker,
            "engine": processing.engine,
            "precision": processing.precision,
            "model_version": processing.model_version,
            "model": processing.model,
            "batch": dict(processing.batch) if processing.batch is not None else None,
        },
    }
