"""The consensus of several models' readings of one post: the weighted mean of their probabilities.

Why the mean of probabilities and not a vote of labels: a model that hesitates (0.40 positive, 0.35
neutral) counts for what it is, not as a full vote, and the result is a probability whose size says
how sure the models are together (the confidence the ``ambiguous`` flag needs). A label vote throws
that away and cannot tell two confident models from two coin flips.

Two-label models (SST-2: negative/positive) say nothing about neutrality, so each sentiment's
combined probability is the weighted mean over the models that have that label; the three are then
scaled to sum to 1. When every model has all three labels this is exactly the weighted mean. Without
it, a two-label model would count as a confident "not neutral" on every post.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

METHOD = "weighted_mean_probability"
#: sentiments in the order ties are broken (the cautious reading first).
TIE_ORDER = ("neutral", "negative", "positive")
#: agreement below this (the weighted share of models whose own label is the consensus) is ambiguous.
AMBIGUOUS_AGREEMENT = 0.5


@dataclass(frozen=True)
class Reading:
    """One model's current classification of the post."""

    model: str
    sentiment: str
    confidence: float
    #: its probability of each sentiment it has (a two-label model has no neutral).
    scores: Mapping[str, float]
    weight: float = 1.0
    model_version: str = ""


@dataclass(frozen=True)
class Verdict:
    """What the models say together."""

    sentiment: str
    #: the combined probability of ``sentiment``.
    confidence: float
    #: the weighted share of the models whose own label is ``sentiment`` (1.0: all agree).
    agreement: float
    ambiguous: bool
    #: combined probability of each sentiment.
    scores: dict[str, float]
    #: models whose own label differs from ``sentiment``, in the order given.
    dissent: list[str] = field(default_factory=list)
    #: each model read: {name: {sentiment, confidence, weight, model_version}}.
    models: dict[str, dict] = field(default_factory=dict)
    method: str = METHOD

    @property
    def margin(self) -> float:
        """The combined probability of ``sentiment`` minus the next best one's."""
        ranked = sorted(self.scores.values(), reverse=True)
        return ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]

    @property
    def basis(self) -> str:
        """The models it was made of with their weights: ``name:weight,...`` (``Consensus.basis``)."""
        return basis({name: reading["weight"] for name, reading in self.models.items()})


def basis(weights: Mapping[str, float]) -> str:
    """``name:weight,...`` in the given order, weights as short as they print (``finbert:1``)."""
    return ",".join(f"{name}:{weight:g}" for name, weight in weights.items())


def combine(readings: Sequence[Reading], ambiguous_below: float) -> Verdict:
    """The consensus of ``readings`` (at least one); ambiguous when agreement is below half or the
    confidence below ``ambiguous_below``."""
    if not readings:
        raise ValueError("a consensus needs at least one reading")
    sentiments = [s for s in TIE_ORDER if any(s in reading.scores for reading in readings)]
    means: dict[str, float] = {}
    for sentiment in sentiments:
        having = [reading for reading in readings if sentiment in reading.scores]
        weight = sum(reading.weight for reading in having)
        means[sentiment] = sum(reading.weight * reading.scores[sentiment] for reading in having) / weight
    total = sum(means.values())
    scores = {sentiment: (mean / total if total > 0 else 1 / len(means)) for sentiment, mean in means.items()}
    winner = max(sentiments, key=lambda s: (scores[s], -TIE_ORDER.index(s)))
    all_weight = sum(reading.weight for reading in readings)
    agreement = sum(reading.weight for reading in readings if reading.sentiment == winner) / all_weight
    confidence = scores[winner]
    return Verdict(
        sentiment=winner,
        confidence=confidence,
        agreement=agreement,
        ambiguous=agreement < AMBIGUOUS_AGREEMENT or confidence < ambiguous_below,
        scores=scores,
        dissent=[reading.model for reading in readings if reading.sentiment != winner],
        models={
            reading.model: {
                "sentiment": reading.sentiment,
                "confidence": reading.confidence,
                "weight": reading.weight,
                "model_version": reading.model_version,
            }
            for reading in readings
        },
    )
