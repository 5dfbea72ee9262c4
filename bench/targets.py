"""A benchmark target and its verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool | None
    detail: str

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        return f"**met** ({self.detail})" if self.met else f"**missed** ({self.detail})"


def one_model(run: dict[str, Any]) -> bool:
    """A pipeline run with one model: the only kind comparable with the (one-model) ceiling and targets;
    a run with several classifies each post several times."""
    return run.get("models", 1) == 1
