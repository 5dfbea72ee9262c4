"""What happens to content ids: read, skip or classify with every configured model, store, agree.
``classify_content`` is the RQ job.

One path for every content id: the RQ job (one id) and the worker's batches (many ids) both call
``classify_contents``, with one error policy:
- skips (content missing, no text, already classified by every model) are outcomes, never errors,
  never retried;
- a job enqueued for another database, or naming a model this worker does not have, is refused,
  never run against this one;
- a failure of the database, its disk or Redis raises ``InfrastructureUnavailable``: nothing is
  decided about the posts, the worker hands their jobs back and waits;
- any other failure is the post's own: ``ClassificationFailed`` (a batch stores each post in its own
  transaction then, so one post's failure touches no other).

A content is brought up to date for every configured model (``VOLFEFE_MODELS``) that lacks a current
classification of it; its rows and its consensus (``db.consensus_store``) are written in one transaction.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as with_changes
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rq.timeouts import BaseTimeoutException

from config import Settings, settings
from consensus.vote import Verdict
from db.consensus_store import lock_contents, refresh_consensus
from db.entity_store import AssetRow, EntityRows, save_entities
from db.identity import identity_in
from db.models import Content
from db.queries import contents_and_entities, current_versions
from db.session import session_scope
from db.store import NewClassification, RowKey, record_skip, replace_classifications, save_classifications
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
    UNKNOWN_MODEL,
    WRONG_DATABASE,
    Outcome,
)
from jobs.registry import check_classify_arguments, check_reclassify_arguments
from model.visible_text import read_post

if TYPE_CHECKING:
    from rq.job import Job

    from model.classifier import FinbertClassifier, Prediction

#: (content id, database id): what a classification job asks for.
Request = tuple[int, str]


@dataclass(frozen=True)
class Redo:
    """A reclassification: of one model (None: every configured one); ``force`` redoes even a
    classification made by the model version this worker would write."""

    force: bool
    model: str | None = None


class ClassificationFailed(VolfefeError):
    """Classifying or storing this post failed for a reason of its own (retried, then failed)."""


class JobRefused(VolfefeError):
    """The job must not run here (wrong database, bad arguments); never retried."""


def classify_content(content_id: int, database_id: str) -> dict[str, Any]:
    """The RQ job: classify one content of the database ``database_id`` with every configured model
    that lacks a classification of it, and store them with the consensus.

    Skips return normally and are never retried; the post's own failure raises ClassificationFailed
    and the infrastructure's InfrastructureUnavailable (the worker returns that job to the queue).
    """
    return _run_alone(
        check_classify_arguments([content_id, database_id], {}), (content_id, database_id), None
    )


def reclassify_content(
    content_id: int, database_id: str, force: bool, model: str | None = None
) -> dict[str, Any]:
    """The RQ job of ``volfefe reclassify``: classify the content again with this worker's models (or
    with ``model`` alone).

    Each current classification is replaced (and kept in history) unless it was made by this very
    model version and ``force`` is false; when none is replaced: skipped, ``already_current``. Errors
    as for ``classify_content``.
    """
    args = [content_id, database_id, force] + ([model] if model is not None else [])
    problem = check_reclassify_arguments(args, {})
    return _run_alone(problem, (content_id, database_id), Redo(force, model))


def _run_alone(problem: str | None, request: Request, redo: Redo | None) -> dict[str, Any]:
    """One request as the running RQ job (a reclassification when ``redo`` is given)."""
    from rq import get_current_job

    job = get_current_job()
    if problem:
        raise refuse(job, problem)
    try:
        (outcome,) = classify_contents(
            [request],
            attempts={request: (job.number_of_retries or 0) + 1} if job is not None else None,
            worker=job.worker_name if job else None,
            replace={request: redo} if redo is not None else None,
            enqueued={request: job.enqueued_at} if job is not None else None,
        )
    except (InfrastructureUnavailable, BaseTimeoutException):
        raise  # not the post's fault: handed back, or retried soon
    except Exception as error:
        raise ClassificationFailed(first_line(error)) from error
    if outcome.status == FAILED:
        raise ClassificationFailed(outcome.error or "failed")
    if outcome.status == REFUSED:
        raise refuse(job, outcome.error or WRONG_DATABASE)
    if job is not None:
        from jobs.react import after_classification

        after_classification(job.connection, settings(), [outcome])
    return outcome.as_result()


def refuse(job: Job | None, reason: str) -> JobRefused:
    """JobRefused for ``reason``, the running RQ job's retries taken away first: RQ retries any exception
    while ``retries_left`` lasts (``BaseWorker.handle_job_failure``), and no retry changes what is wrong."""
    if job is not None:
        job.retries_left = 0
    return JobRefused(reason)


@dataclass
class _Plan:
    """What one call decides before any model runs: the outcomes known already, and per content the
    models to run (and whether each replaces a current row)."""

    outcomes: dict[Request, Outcome] = field(default_factory=dict)
    #: content id -> model names to classify it with, in configuration order.
    models: dict[int, list[str]] = field(default_factory=dict)
    #: (content id, model) keys that replace a current classification (reclassifications).
    replacing: set[RowKey] = field(default_factory=set)
    #: among ``replacing``: those replaced even when made by the same model version.
    forced: set[RowKey] = field(default_factory=set)
    texts: dict[int, str] = field(default_factory=dict)
    facts: dict[int, TextFacts] = field(default_factory=dict)
    #: content id -> its request (one per content: a second job for the same post runs after the first).
    requests: dict[int, Request] = field(default_factory=dict)
    #: contents whose entities are to be extracted (a classification job's, when none are stored).
    entities: set[int] = field(default_factory=set)
    identity: str | None = None


def classify_contents(
    requests: Sequence[Request],
    database_url: str | None = None,
    *,
    attempts: Mapping[Request, int] | None = None,
    worker: str | None = None,
    replace: Mapping[Request, Redo] | None = None,
    enqueued: Mapping[Request, datetime | None] | None = None,
    config: Settings | None = None,
) -> list[Outcome]:
    """Classify many contents with one read, batched forward passes per model and one write; one
    outcome per request.

    Each stored classification carries its audit (``jobs.audit``): ``attempts`` gives each request's
    attempt number (default 1), ``worker`` the worker's name (default host:pid), ``enqueued`` each
    request's job's latest enqueue (``processing.batch.enqueued_at``). ``replace`` makes these requests
    reclassifications (``Redo``). Raises InfrastructureUnavailable when the database (or its disk)
    fails; any other failure of reading or of a model raises as it is (the caller runs the requests one
    by one then).
    """
    config = config or settings()
    url = database_url or config.database_url
    wanted = list(dict.fromkeys(requests))
    plan = _plan(url, config, wanted, replace or {})
    if plan.requests:
        new: list[NewClassification] = []
        if any(plan.models.values()):
            from model.warm import warm_classifiers  # torch is imported only where texts are classified

            classifiers = warm_classifiers(config)
            new = _classify(plan, classifiers, config, attempts or {}, worker, enqueued or {})
        found = _entities(plan)
        weights = {spec.name: spec.weight for spec in config.models}
        plan.outcomes.update(_write(url, plan, new, found, weights, config.ambiguous_confidence))
    return [plan.outcomes[request] for request in wanted]


def _plan(url: str, config: Settings, wanted: list[Request], replace: Mapping[Request, Redo]) -> _Plan:
    """Read the contents and their current classifications; decide each request's skip or models."""
    plan = _Plan()
    names = config.model_names
    targets: dict[str, str] = {}
    if any(redo.force is False for redo in replace.values()):
        from model.warm import warm_classifiers  # the version decides what is current already

        targets = {name: classifier.model_version for name, classifier in warm_classifiers(config).items()}
    try:
        with session_scope(url) as session:
            identity = identity_in(session)
            plan.identity = identity
            ours = [request for request in wanted if request[1] == identity]
            for content_id, database_id in wanted:
                if database_id != identity:
                    plan.outcomes[(content_id, database_id)] = Outcome.refused(
                        content_id,
                        WRONG_DATABASE,
                        f"enqueued for database {database_id}, this worker's database is {identity}",
                    )
            ids = [content_id for content_id, _ in ours]
            contents, extracted = contents_and_entities(session, ids)
            versions = current_versions(session, ids)
            for request in ours:
                content_id = request[0]
                content = contents.get(content_id)
                post = read_post(content.text) if content is not None else None
                text = post.text if post is not None else ""
                have = versions.get(content_id, {})
                redo = replace.get(request)
                if redo is not None and redo.model is not None and redo.model not in names:
                    plan.outcomes[request] = Outcome.refused(
                        content_id,
                        UNKNOWN_MODEL,
                        f"model {redo.model!r} is not configured on this worker (VOLFEFE_MODELS: {', '.join(names)})",
                    )
                    continue
                if redo is None:
                    models = [name for name in names if name not in have]
                    lacks_entities = content is not None and content_id not in extracted
                    reason = _skip_reason(content, text, models or lacks_entities, ALREADY_CLASSIFIED)
                else:
                    chosen = [redo.model] if redo.model is not None else list(names)
                    models = [name for name in chosen if redo.force or have.get(name) != targets.get(name)]
                    reason = _skip_reason(content, text, models, ALREADY_CURRENT)
                if reason is not None:
                    plan.outcomes[request] = Outcome.skipped(content_id, reason)
                    if reason == NO_TEXT_TO_CLASSIFY:
                        record_skip(session, content_id, reason)
                    continue
                plan.requests[content_id] = request
                plan.models[content_id] = models
                if redo is None and content_id not in extracted:
                    plan.entities.add(content_id)
                plan.texts[content_id] = text
                plan.facts[content_id] = TextFacts(
                    text, post.input_chars, cut=post.cut, quote=post.is_quote, repost=post.is_repost
                )
                if redo is not None:
                    keys = {(content_id, name) for name in models}
                    plan.replacing |= keys
                    if redo.force:
                        plan.forced |= keys
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
        raise
    return plan


def _skip_reason(content: Content | None, text: str, work: object, nothing_to_do: str) -> str | None:
    """Why the content is skipped (``work``: what is left to do for it, falsy when nothing), or None."""
    if content is None:
        return CONTENT_NOT_FOUND
    if not work:
        return nothing_to_do
    if not text:
        return NO_TEXT_TO_CLASSIFY
    return None


def _engine_and_precision(model_version: str) -> tuple[str, str]:
    """(engine, precision) from a model version's last part: ``bf16`` (torch) or ``openvino-int8``."""
    tag = model_version.rsplit("+", 1)[-1]
    engine, _, precision = tag.rpartition("-")
    return (engine or "torch", precision)


def _classify(
    plan: _Plan,
    classifiers: Mapping[str, FinbertClassifier],
    config: Settings,
    attempts: Mapping[Request, int],
    worker: str | None,
    enqueued: Mapping[Request, datetime | None],
) -> list[NewClassification]:
    """Run each model on the texts that need it (forward passes sorted by length) and audit each result."""
    worker_name = worker or f"{socket.gethostname()}:{os.getpid()}"
    new: list[NewClassification] = []
    for name in config.model_names:
        content_ids = [content_id for content_id, models in plan.models.items() if name in models]
        if not content_ids:
            continue
        classifier = classifiers[name]
        classified = classifier.classify_batch([plan.texts[content_id] for content_id in content_ids])
        predictions, passes = classified.predictions, classified.passes
        engine, precision = _engine_and_precision(classifier.model_version)
        for content_id, prediction in zip(content_ids, predictions, strict=True):
            request = plan.requests[content_id]
            meta = audit(
                prediction,
                plan.facts[content_id],
                Processing(
                    worker=worker_name,
                    engine=engine,
                    precision=precision,
                    model_version=classifier.model_version,
                    attempt=attempts.get(request, 1),
                    batch={
                        "enqueued_at": _iso(enqueued.get(request)),
                        "items": len(predictions),
                        "forward_passes": passes,
                    },
                    model=name,
                ),
            )
            new.append(_new_row(content_id, name, prediction, classifier.model_version, meta))
    return new


def _entities(plan: _Plan) -> dict[int, EntityRows]:
    """The entities of the contents that lack them, from the visible text the models read."""
    if not plan.entities:
        return {}
    from entities import default_extractor  # the asset list compiled (and a NER model loaded) once

    ids = sorted(plan.entities)
    found = default_extractor().entities_many([plan.texts[content_id] for content_id in ids])
    return {
        content_id: EntityRows(
            item.to_json(),
            item.assets_version,
            [AssetRow(link.symbol, link.kind, link.method, link.mentions) for link in item.links],
        )
        for content_id, item in zip(ids, found, strict=True)
    }


def _new_row(
    content_id: int, model: str, prediction: Prediction, version: str, meta: dict[str, Any]
) -> NewClassification:
    return NewClassification(
        content_id, model, prediction.sentiment, prediction.confidence, version, prediction.raw_scores, meta
    )


def _iso(moment: datetime | None) -> str | None:
    """``moment`` in UTC as ISO 8601 with milliseconds (as ``processing.classified_at``), or None."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")


def _write(
    url: str,
    plan: _Plan,
    new: list[NewClassification],
    found: dict[int, EntityRows],
    weights: dict[str, float],
    ambiguous_below: float,
) -> dict[Request, Outcome]:
    """Store the batch in one transaction; if that fails for a post's reason, each post in its own."""
    try:
        return _write_in_one(url, plan, set(plan.requests), new, found, weights, ambiguous_below)
    except Exception as error:
        if is_infrastructure_failure(error):
            raise infrastructure_error(error) from error
    outcomes: dict[Request, Outcome] = {}
    for content_id, request in plan.requests.items():
        try:
            outcomes.update(_write_in_one(url, plan, {content_id}, new, found, weights, ambiguous_below))
        except Exception as error:
            if is_infrastructure_failure(error):
                raise infrastructure_error(error) from error
            outcomes[request] = Outcome(content_id, FAILED, error=first_line(error))
    return outcomes


def _write_in_one(
    url: str,
    plan: _Plan,
    content_ids: set[int],
    new: list[NewClassification],
    found: dict[int, EntityRows],
    weights: dict[str, float],
    ambiguous_below: float,
) -> dict[Request, Outcome]:
    """The classifications and entities of ``content_ids``, and their consensus, in one transaction; an
    outcome for each (classified, or skipped when other runs had written everything first)."""
    mine = [item for item in new if item.content_id in content_ids]
    fresh = [item for item in mine if item.key not in plan.replacing]
    again = [item for item in mine if item.key in plan.replacing]
    with session_scope(url) as session:
        lock_contents(session, content_ids)
        changed = save_classifications(session, fresh)
        replaced = replace_classifications(session, again, plan.forced)
        changed |= {key for key, result in replaced.items() if result != "current"}
        touched = {content_id for content_id, _ in changed}
        stored: dict[int, list[NewClassification]] = {}
        for item in mine:
            if item.key in changed:
                stored.setdefault(item.content_id, []).append(item)
        verdicts = refresh_consensus(session, touched, weights, ambiguous_below, written=stored)
        linked = save_entities(session, {i: rows for i, rows in found.items() if i in content_ids})
    by_content: dict[int, list[NewClassification]] = {content_id: [] for content_id in content_ids}
    for item in mine:
        by_content[item.content_id].append(item)
    outcomes: dict[Request, Outcome] = {}
    for content_id, items in by_content.items():
        request = plan.requests[content_id]
        written = stored.get(content_id, [])
        assets = [link.symbol for link in found[content_id].links] if content_id in linked else None
        if not written:
            redone = any(item.key in plan.replacing for item in items)
            outcome = Outcome.skipped(content_id, ALREADY_CURRENT if redone else ALREADY_CLASSIFIED)
        else:
            outcome = _classified(content_id, written, verdicts.get(content_id))
        outcomes[request] = with_changes(outcome, assets=assets) if assets is not None else outcome
    return outcomes


def _classified(content_id: int, written: list[NewClassification], verdict: Verdict | None) -> Outcome:
    """The job's result: each model's new reading and, with several models, the consensus."""
    models = {
        item.model: {
            "sentiment": item.sentiment,
            "confidence": item.confidence,
            "model_version": item.model_version,
        }
        for item in written
    }
    if verdict is None or len(verdict.models) == 1:
        only = written[0]
        return Outcome(
            content_id,
            CLASSIFIED,
            sentiment=only.sentiment,
            confidence=only.confidence,
            model_version=only.model_version if len(written) == 1 else None,
            models=models if len(written) > 1 else None,
        )
    return Outcome(
        content_id,
        CLASSIFIED,
        sentiment=verdict.sentiment,
        confidence=verdict.confidence,
        models=models,
        consensus={
            "agreement": verdict.agreement,
            "ambiguous": verdict.ambiguous,
            "dissent": verdict.dissent,
        },
    )
