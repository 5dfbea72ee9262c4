"""A benchmark target and its verdict."""

from __future__ import annotations

from dataclasses import dataclass


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
