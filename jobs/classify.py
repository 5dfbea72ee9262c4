"""What happens to content ids: read, skip or classify, store. ``classify_content`` is the RQ job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from config import settings
from db.models import Content
from db.queries import contents_by_id
from db.session import session_scope
from db.store import record_skip, save_classification, save_classifications
from jobs.outcomes import (
    ALREADY_CLASSIFIED,
    CLASSIFIED,
    CONTENT_NOT_FOUND,
    FAILED,
    NO_TEXT_TO_CLASSIFY,
    Outcome,
)
from workers.visible_text import visible_text

if TYPE_CHECKING:
    from workers.classifier import Prediction


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


def classify_contents(
    ids: Sequence[int], database_url: str | None = None, *, raise_errors: bool = False
) -> list[Outcome]:
    """Classify many contents with one read, one forward pass and one write; one outcome per distinct id.

    If the write of the whole batch fails, each classification is stored in its own transaction, so
    that one content's failure touches no other: it is returned as a ``failed`` outcome, or raised
    with ``raise_errors``.
    """
    from workers.warm import warm_classifier  # torch is imported only where texts are classified

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
    if texts:
        classifier = warm_classifier()
        predictions = dict(zip(texts, classifier.classify(list(texts.values())), strict=True))
        outcomes.update(_store(url, classifier.model_version, predictions, raise_errors))
    return [outcomes[content_id] for content_id in wanted]


def _store(
    url: str, version: str, predictions: dict[int, Prediction], raise_errors: bool
) -> dict[int, Outcome]:
    try:
        with session_scope(url) as session:
            inserted = save_classifications(session, version, predictions)
    except Exception:
        if raise_errors:
            raise
        return _store_one_by_one(url, version, predictions)
    return {
        content_id: _stored(content_id, prediction, version, content_id in inserted)
        for content_id, prediction in predictions.items()
    }


def _store_one_by_one(url: str, version: str, predictions: dict[int, Prediction]) -> dict[int, Outcome]:
    """Each classification in its own transaction: a failure is that content's ``failed`` outcome."""
    outcomes = {}
    for content_id, prediction in predictions.items():
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
            outcomes[content_id] = Outcome(content_id, FAILED, error=f"{type(error).__name__}: {error}")
        else:
            outcomes[content_id] = _stored(content_id, prediction, version, inserted)
    return outcomes


def _stored(content_id: int, prediction: Prediction, version: str, inserted: bool) -> Outcome:
    """Classified, or skipped when another run had stored this content's classification first."""
    if not inserted:
        return Outcome.skipped(content_id, ALREADY_CLASSIFIED)
    return Outcome(
        content_id,
        CLASSIFIED,
        sentiment=prediction.sentiment,
        confidence=prediction.confidence,
        model_version=version,
    )
