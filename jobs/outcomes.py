"""How a classification job ends, as a value: classified, skipped (with why), refused or failed."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

CLASSIFIED = "classified"
SKIPPED = "skipped"
FAILED = "failed"
#: a reaction job stored the market's reaction to the content (``reactions``: records by status).
REACTED = "reacted"
#: not run at all: the job was enqueued for another database (never retried).
REFUSED = "refused"

#: skip reasons: outcomes, not errors; a skipped job is never retried.
CONTENT_NOT_FOUND = "content_not_found"
NO_TEXT_TO_CLASSIFY = "no_text_to_classify"
ALREADY_CLASSIFIED = "already_classified"
#: reclassification skip: the content's classification was made by this model version already.
ALREADY_CURRENT = "already_current"
#: reaction skip: the content has no publication time to measure from.
NO_PUBLICATION_TIME = "no_publication_time"
#: reaction skip: the content's entities are not stored yet (its classification job enqueues it again).
NO_ENTITIES = "no_entities"
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
    #: the assets the content was linked to, when this job extracted its entities.
    assets: list[str] | None = None
    #: a reaction job: its records by status (``ok``, ``awaiting_prices``, ...).
    reactions: dict[str, int] | None = None

    @classmethod
    def skipped(cls, content_id: int, reason: str) -> Outcome:
        return cls(content_id, SKIPPED, reason=reason)

    @classmethod
    def refused(cls, content_id: int, reason: str, error: str) -> Outcome:
        return cls(content_id, REFUSED, reason=reason, error=error)

    def as_result(self) -> dict[str, Any]:
        """The job's return value, stored by RQ: only the fields that say something. The values are the
        outcome's own, not copies (``dataclasses.asdict`` copies every nested dict and list, ~20 µs a
        job): a result is serialized, never changed."""
        return {name: value for name in _FIELD_NAMES if (value := getattr(self, name)) is not None}


_FIELD_NAMES = tuple(field.name for field in fields(Outcome))
