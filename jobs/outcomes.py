"""How a classification job ends, as a value: classified, skipped (with why), refused or failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CLASSIFIED = "classified"
SKIPPED = "skipped"
FAILED = "failed"
#: not run at all: the job was enqueued for another database (never retried).
REFUSED = "refused"

#: skip reasons: outcomes, not errors; a skipped job is never retried.
CONTENT_NOT_FOUND = "content_not_found"
NO_TEXT_TO_CLASSIFY = "no_text_to_classify"
ALREADY_CLASSIFIED = "already_classified"
#: reclassification skip: the content's classification was made by this model version already.
ALREADY_CURRENT = "already_current"
#: refusal reason: the job names a database other than the worker's.
WRONG_DATABASE = "wrong_database"
#: refusal reason: a reclassification names a model the worker does not have (VOLFEFE_MODELS differ).
UNKNOWN_MODEL = "unknown_model"


@dataclass(frozen=True)
class Outcome:
    content_id: int
    status: str
    reason: str | None = None
    sentiment: str | None = None
    confidence: float | None = None
    model_version: str | None = None
    error: str | None = None
    #: several models: each one's new reading, {name: {sentiment, confidence, model_version}}.
    models: dict[str, dict[str, Any]] | None = None
    #: several models: the consensus's agreement, ambiguous flag and dissenting models
    #: (``sentiment`` and ``confidence`` are then the consensus's).
    consensus: dict[str, Any] | None = None

    @classmethod
    def skipped(cls, content_id: int, reason: str) -> Outcome:
        return cls(content_id, SKIPPED, reason=reason)

    @classmethod
    def refused(cls, content_id: int, reason: str, error: str) -> Outcome:
        return cls(content_id, REFUSED, reason=reason, error=error)

    def as_result(self) -> dict[str, Any]:
        """The job's return value, stored by RQ: only the fields that say something."""
        return {key: value for key, value in asdict(self).items() if value is not None}
