"""How far two models agree beyond chance: raw agreement and Cohen's kappa, from their joint counts.

Raw agreement flatters models that both say "neutral" to most posts; kappa subtracts the agreement
their label frequencies would give by chance: ``(p_o - p_e) / (1 - p_e)``, 1 for full agreement, 0 for
chance, below 0 for less than chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PairAgreement:
    """Two models on the contents both have read."""

    first: str
    second: str
    #: contents both have classified.
    contents: int
    #: share with the same label (None without contents).
    observed: float | None
    #: share expected by chance from each model's label frequencies.
    expected: float | None
    #: Cohen's kappa (None without contents, or when chance agreement is 1: both always say one label).
    kappa: float | None

    def as_dict(self) -> dict:
        return {
            "models": [self.first, self.second],
            "contents": self.contents,
            "agreement": self.observed,
            "chance_agreement": self.expected,
            "kappa": self.kappa,
        }


def pair_agreement(first: str, second: str, joint: Mapping[tuple[str, str], int]) -> PairAgreement:
    """Agreement of two models from ``joint``: contents per (first's label, second's label)."""
    total = sum(joint.values())
    if total == 0:
        return PairAgreement(first, second, 0, None, None, None)
    observed = sum(count for (a, b), count in joint.items() if a == b) / total
    first_share: dict[str, float] = {}
    second_share: dict[str, float] = {}
    for (a, b), count in joint.items():
        first_share[a] = first_share.get(a, 0.0) + count / total
        second_share[b] = second_share.get(b, 0.0) + count / total
    expected = sum(share * second_share.get(label, 0.0) for label, share in first_share.items())
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return PairAgreement(first, second, total, observed, expected, kappa)
