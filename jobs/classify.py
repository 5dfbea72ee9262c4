"""What happens to content ids: read, skip or classify, store. ``classify_content`` is the RQ job.

One path for every content id: the RQ job (one id) and the worker's batches (many ids) both call
``classify_contents``, with one error policy:
- skips (content missing, no text, already classified) are outcomes, never errors, never retried;
- a job enqueued for another database is refused, never run against this one;
- a failure of the database, its disk or Redis raises ``InfrastructureUnavailable``: nothing is
  decided about the posts, the worker hands their jobs back and waits;
- any other failure is the post's own: ``ClassificationFailed`` (a batch stores each post in its own
  transaction then, so one post's failure touches no other).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rq.timeouts import BaseTimeoutException
from sqlalchemy import select

from config import settings
from db.models import Content, DatabaseIdentity
from db.queries import contents_by_id, current_versions
from db.session import session_scope
from db.store import record_skip, replace_classifications, save_classification, save_classifications
from errors import VolfefeError, first_line
from jobs.audit import Processing, TextFacts, audit
from jobs.failures import InfrastructureUnavailable, infrastructure_error, is_infrastructure_failure
from jobs.outcomes import (
    ALREADY_CLASSIFIED,
    ALREADY_CURRENT,
    CLASSIFIED,
    CONTENT_NOT_FOUND,
    FAILED,
    NO_TEXT_TO_CLASSIFY,
    REFUSED,
    WRONG_DATABASE,
    Outcome,
)
from jobs.registry import check_classify_arguments, check_reclassify_arguments
from model.visible_text import read_post

if TYPE_CHECKING:
    from rq.job import Job

    from model.classifier import Prediction

#: the inference engine (FINBERT_ENGINE will choose among others).
ENGINE = "torch"
#: (content id, database id): what a classification job asks for.
Request = tuple[int, str]


class ClassificationFailed(VolfefeError):
    """Classifying or storing this post failed for a reason of its own (retried, then failed)."""


class JobRefused(VolfefeError):
    """The job must not run here (wrong database, bad arguments); never retried."""


def classify_content(content_id: int, database_id: str) -> dict[str, Any]:
    """The RQ job: classify one content of the database ``database_id`` and store it.

    Skips return normally and are never retried; the post's own failure raises ClassificationFailed
    and the infrastructure's InfrastructureUnavailable (the worker returns that job to the queue).
    """
    return _run_alone(
        check_classify_arguments([content_id, database_id], {}), (content_id, database_id), None
    )


def reclassify_content(content_id: int, database_id: str, force: bool) -> dict[str, Any]:
    """The RQ job of ``volfefe reclassify``: classify the content again with this worker's model.

    Its current classification is replaced (and kept in history) unless it was made by this very
    model version and ``force`` is false (then: skipped, ``already_current``). Errors as for
    ``classify_content``.
    """
    problem = check_reclassify_arguments([content_id, database_id, force], {})
    return _run_alone(problem, (content_id, database_id), force)


def _run_alone(problem: str | None, request: Request, force: bool | None) -> dict[str, Any]:
    """One request as the running RQ job (a reclassification when ``force`` is not None)."""
    from rq import get_current_job

    job = get_current_job()
    if problem:
        raise _refused(job, problem)
    try:
        (outcome,) = classify_contents(
            [request],
            attempts={request: (job.number_of_retries or 0) + 1} if job is not None else None,
            worker=job.worker_name if job else None,
            replace={request: force} if force is not None else None,
            enqueued={request: job.enqueued_at} if job is not None else None,
        )
    except (InfrastructureUnavailable, BaseTimeoutException):
        raise  # not the post's fault: handed back, or retried soon
    except Exception as error:
        raise ClassificationFailed(first_line(error)) from error
    if outcome.status == FAILED:
        raise ClassificationFailed(outcome.error or "failed")
    if outcome.status == REFUSED:
        raise _refused(job, outcome.error or WRONG_DATABASE)
    return outcome.as_result()


def _refused(job: Job | None, reason: str) -> JobRefused:
    """JobRefused for ``reason``, the running RQ job's retries taken away first: RQ retries any exception
    while ``retries_left`` lasts (``BaseWorker.handle_job_failure``), and no retry changes what is wrong."""
    if job is not None:
        job.retries_left = 0
    return JobRefused(reason)


def _skip_reason(content: Content | None, text: str) -> str | None:
    if content is None:
        return CONTENT_NOT_FOUND
    if content.classified:
        return ALREADY_CLASSIFIED
    if not text:
        return NO_TEXT_TO_CLASSIFY
    return None


def classify_contents(
    requests: Sequence[Request],
    database_url: str | None = None,
    *,
    attempts: Mapping[Request, int] | None = None,
    worker: str | None = None,
    replace: Mapping[Request, bool] | None = None,
    enqueued: Mapping[Request, datetime | None] | None = None,
) -> list[Outcome]:
    """Classify many contents with one read, batched forward passes and one write; one outcome per request.

    Each stored classification carries its audit (``jobs.audit``): ``attempts`` gives each request's
    attempt number (default 1), ``worker`` the worker's name (default host:pid), ``enqueued`` each
    request's job's latest enqueue (``processing.batch.enqueued_at``).
    ``replace`` makes these requests reclassifications (value: force): a classified content is
    classified again and its classification replaced (``db.store.replace_classifications``) unless it
    was made by this model version already and force is false (skipped: ``already_current``).
    Raises InfrastructureUnavailable when the database (or its disk) fails; any other failure of
    reading or of the model raises as it is (the caller runs the requests one by one then).
    """
    url = database_url or settings().database_url
    wanted = list(dict.fromkeys(requests))
    outcomes: dict[Request, Outcome] = {}
    texts: dict[int, str] = {}
    facts: dict[int, TextFacts] = {}
    replace = replace or {}
    target_version = None
    if replace:
        from model.warm import warm_classifier  # the version decides what is current already

        target_version = warm_classifier().model_version
    try:
        with session_scope(url) as session:
            identity = session.scalar(select(DatabaseIdentity.id).order_by(DatabaseIdentity.created_at))
            ours = [request for request in wanted if request[1] == identity]
            for content_id, database_id in wanted:
                if database_id != identity:
                    outcomes[(content_id, database_id)] = Outcome.refused(
                        content_id,
                        WRONG_DATABASE,
                        f"enqueued for database {database_id}, this worker's database is {identity}",
                    )
            contents = contents_by_id(session, [content_id for content_id, _ in ours])
            versions = current_versions(session, [request[0] for request in ours if request in replace])
            for request in ours:
                content = contents.get(request[0])
                post = read_post(content.text) if content is not None else None
                text = post.text if post is not None else ""
                if request in replace:
                    reason = _reclassify_skip_reason(
                        content, text, versions.get(request[0]), target_version, replace[request]
                    )
                else:
                    reason = _skip_reason(content, text)
                if reason is None and content is not None:
                    texts[request[0]] = text
                    facts[request[0]] = TextFacts(
                        text, post.input_chars, cut=post.cut, quote=post.is_quote, repost=post.is_repost
                    )
                    continue
                outcomes[request] = Outcome.skipped(request[0], reason)
                if reason == NO_TEXT_TO_CLASSIFY:
                    record_skip(session, request[0], reason)
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
        raise
    if texts:
        from model.warm import warm_classifier  # torch is imported only where texts are classified

        classifier = warm_classifier()
        predictions = dict(zip(texts, classifier.classify(list(texts.values())), strict=True))
        worker_name = worker or f"{socket.gethostname()}:{os.getpid()}"
        precision = classifier.model_version.rsplit("+", 1)[-1]
        rows = sum(prediction.windows for prediction in predictions.values())
        size = classifier.batch_size  # FinbertClassifier.classify: all windows, in passes of batch_size
        passes = [min(size, rows - start) for start in range(0, rows, size)]
        metas = {
            content_id: audit(
                prediction,
                facts[content_id],
                Processing(
                    worker=worker_name,
                    engine=ENGINE,
                    precision=precision,
                    model_version=classifier.model_version,
                    attempt=(attempts or {}).get((content_id, identity), 1),
                    batch={
                        "enqueued_at": _iso((enqueued or {}).get((content_id, identity))),
                        "items": len(predictions),
                        "forward_passes": passes,
                    },
                ),
            )
            for content_id, prediction in predictions.items()
        }
        forced = {request[0] for request, force in replace.items() if force}
        redo = {request[0] for request in replace if request[1] == identity}
        fresh = {content_id: p for content_id, p in predictions.items() if content_id not in redo}
        again = {content_id: p for content_id, p in predictions.items() if content_id in redo}
        stored = _store(url, classifier.model_version, fresh, metas) if fresh else {}
        if again:
            stored.update(_replace(url, classifier.model_version, again, metas, forced))
        outcomes.update({(content_id, identity): outcome for content_id, outcome in stored.items()})
    return [outcomes[request] for request in wanted]


def _iso(moment: datetime | None) -> str | None:
    """``moment`` in UTC as ISO 8601 with milliseconds (as ``processing.classified_at``), or None."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")


def _reclassify_skip_reason(
    content: Content | None, text: str, current: str | None, target: str | None, force: bool
) -> str | None:
    if content is None:
        return CONTENT_NOT_FOUND
    if not text:
        return NO_TEXT_TO_CLASSIFY
    if current is not None and current == target and not force:
        return ALREADY_CURRENT
    return None


def _replace(
    url: str,
    version: str,
    predictions: dict[int, Prediction],
    metas: dict[int, dict[str, Any]],
    forced: set[int],
) -> dict[int, Outcome]:
    """Reclassifications in one transaction; if it fails for a post's reason, each in its own."""
    try:
        return _replace_in_one(url, version, predictions, metas, forced)
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
    outcomes: dict[int, Outcome] = {}
    for content_id, prediction in predictions.items():
        try:
            outcomes.update(_replace_in_one(url, version, {content_id: prediction}, metas, forced))
        except Exception as error:
            if is_infrastructure_failure(error):
                raise infrastructure_error(error) from error
            outcomes[content_id] = Outcome(content_id, FAILED, error=first_line(error))
    return outcomes


def _replace_in_one(
    url: str,
    version: str,
    predictions: dict[int, Prediction],
    metas: dict[int, dict[str, Any]],
    forced: set[int],
) -> dict[int, Outcome]:
    with session_scope(url) as session:
        results = replace_classifications(session, version, predictions, metas, forced)
    return {
        content_id: _replaced(content_id, predictions[content_id], version, result)
        for content_id, result in results.items()
    }


def _replaced(content_id: int, prediction: Prediction, version: str, result: str) -> Outcome:
    if result == "current":
        return Outcome.skipped(content_id, ALREADY_CURRENT)
    return _stored(content_id, prediction, version, True)


def _store(
    url: str, version: str, predictions: dict[int, Prediction], metas: dict[int, dict[str, Any]]
) -> dict[int, Outcome]:
    try:
        with session_scope(url) as session:
            inserted = save_classifications(session, version, predictions, metas)
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
        return _store_one_by_one(url, version, predictions, metas)
    return {
        content_id: _stored(content_id, prediction, version, content_id in inserted)
        for content_id, prediction in predictions.items()
    }


def _store_one_by_one(
    url: str, version: str, predictions: dict[int, Prediction], metas: dict[int, dict[str, Any]]
) -> dict[int, Outcome]:
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
                    metas.get(content_id),
                )
        except Exception as error:
            if is_infrastructure_failure(error):
                raise infrastructure_error(error) from error
            outcomes[content_id] = Outcome(content_id, FAILED, error=first_line(error))
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
