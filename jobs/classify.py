"""What happens to content ids: read, skip or classify, store. ``classify_content`` is the RQ job."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from config import settings
from db.models import Content
from db.queries import contents_by_id
from db.session import session_scope
from db.store import record_skip, save_classification
from jobs.outcomes import (
    ALREADY_CLASSIFIED,
    CLASSIFIED,
    CONTENT_NOT_FOUND,
    FAILED,
    NO_TEXT_TO_CLASSIFY,
    Outcome,
)
from workers.visible_text import visible_text


def classify_content(content_id: int) -> dict[str, Any]:
    """The RQ job: classify one content and store it.

    Skips (content missing, no text, already classified) return normally and are never retried;
    any other failure raises, so that RQ retries the job.
    """
    (outcome,) = classify_contents([int(content_id)], raise_errors=True)
    return outcome.as_result()


def _skip_reason(content: Content | None, text: str) -> str | None:
    if content is None:
        return CONTENT_NOT_FOUND
    if content.classified:
        return ALREADY_CLASSIFIED
    if not text:
        return NO_TEXT_TO_CLASSIFY
    return None


def texts_to_classify(ids: Iterable[int], database_url: str | None = None) -> dict[int, str]:
    """The visible text of each id among ``ids`` that would be classified now (no skip)."""
    with session_scope(database_url or settings().database_url) as session:
        contents = contents_by_id(session, ids)
        texts = {content_id: visible_text(content.text) for content_id, content in contents.items()}
        return {
            content_id: text
            for content_id, text in texts.items()
            if _skip_reason(contents[content_id], text) is None
        }


def classify_contents(
    ids: Sequence[int], database_url: str | None = None, *, raise_errors: bool = False
) -> list[Outcome]:
    """Classify many contents with one forward pass; one outcome per distinct id, in order.

    Each classification is stored in its own transaction, so one content's failure touches no other.
    A failed store is returned as a ``failed`` outcome, or raised with ``raise_errors``.
    """
    from workers.warm import predict, warm_classifier  # torch is imported only where texts are classified

    url = database_url or settings().database_url
    wanted = list(dict.fromkeys(ids))
    outcomes: dict[int, Outcome] = {}
    texts: dict[int, str] = {}
    with session_scope(url) as session:
        contents = contents_by_id(session, wanted)
        for content_id in wanted:
            content = contents.get(content_id)
            text = visible_text(content.text) if content is not None else ""
            reason = _skip_reason(content, text)
            if reason is None:
                texts[content_id] = text
                continue
            outcomes[content_id] = Outcome.skipped(content_id, reason)
            if reason == NO_TEXT_TO_CLASSIFY:
                record_skip(session, content_id, reason)

    predictions = predict(list(texts.values()))
    version = warm_classifier().model_version if texts else ""
    for content_id, prediction in zip(texts, predictions, strict=True):
        try:
            with session_scope(url) as session:
                inserted = save_classification(
                    session,
                    content_id,
                    prediction.sentiment,
                    prediction.confidence,
                    version,
                    prediction.raw_scores,
                )
        except Exception as error:
            if raise_errors:
                raise
            outcomes[content_id] = Outcome(content_id, FAILED, error=f"{type(error).__name__}: {error}")
            continue
        outcomes[content_id] = (
            Outcome(
                content_id,
                CLASSIFIED,
                sentiment=prediction.sentiment,
                confidence=prediction.confidence,
                model_version=version,
            )
            if inserted
            else Outcome.skipped(content_id, ALREADY_CLASSIFIED)
        )
    return [outcomes[content_id] for content_id in wanted]
