"""``volfefe reclassify``: classify contents again with the configured models, through the queue.

The selection (``--stale`` by default) is compared with the model version each configured model will
write (read from its config, no weights loaded). ``--model NAME`` redoes that model only. Each selected
content gets one unique job ``reclassify-content-<id>-<database id>`` (``...-<model>`` for one model);
the worker replaces its classifications in one transaction, keeps the old ones in
``classification_history`` and recomputes the content's consensus. The hourly sweep never reclassifies.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime

from config import Settings
from db.existence import require_existing_database
from db.queries import current_versions, reclassification_candidates
from db.session import session_scope

#: exit status when something asked for was not done.
EXIT_FAILURE = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument(
        "--stale",
        action="store_true",
        help="contents classified by another model or precision than the configured one (the default)",
    )
    selection.add_argument("--ids", type=_ids, help="these content ids, comma-separated")
    selection.add_argument(
        "--before", type=_date, metavar="DATE", help="contents classified before DATE (ISO 8601)"
    )
    selection.add_argument("--all", action="store_true", help="every classified content (needs --force)")
    parser.add_argument(
        "--force", action="store_true", help="replace even classifications made by the configured model"
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="redo this model of VOLFEFE_MODELS only (default: every configured one)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would change; enqueue nothing")
    parser.add_argument(
        "--wait", action="store_true", help="wait for the jobs, then a summary; exit 1 if any failed"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: stop waiting after SECONDS"
    )


def _ids(value: str) -> list[int]:
    parts = [part.strip() for part in value.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of content ids (whole numbers >= 1)")
    return [int(part) for part in parts]


def _date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date (e.g. 2026-11-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reclassify(config: Settings, args: argparse.Namespace) -> int:
    from model.classifier import configured_model_version
    from model.engine_choice import planned_engine

    if args.all and not args.force:
        print("volfefe reclassify: error: --all replaces every classification: add --force", file=sys.stderr)
        return 2
    if args.timeout is not None and not args.wait:
        print("volfefe reclassify: error: --timeout goes with --wait", file=sys.stderr)
        return 2
    specs = [config.model_spec(args.model)] if args.model else list(config.models)
    require_existing_database(config.database_url)
    # What the workers write: the configured engine, or torch where OpenVINO cannot run (not installed,
    # or its conversion failed): the default engine depends on the CPU and on the build.
    targets = {}
    for spec in specs:
        planned = planned_engine(config.for_model(spec))
        targets[spec.name] = configured_model_version(spec.source, planned.precision, engine=planned.engine)
    names = list(targets)
    with session_scope(config.database_url) as session:
        if args.ids:
            candidates = reclassification_candidates(session, names, ids=args.ids)
        elif args.before:
            candidates = reclassification_candidates(session, names, before=args.before)
        elif args.all:
            candidates = reclassification_candidates(session, names)
        else:
            candidates = reclassification_candidates(session, names, stale_for=targets)
    described = ", ".join(f"{name} {version}" for name, version in targets.items())
    if args.dry_run:
        for content_id, versions in candidates:
            changes = []
            for name, target in targets.items():
                version = versions.get(name)
                unchanged = version == target and not args.force
                after = "unchanged (already by it; --force to redo)" if unchanged else target
                changes.append(f"{name}: {version or '(unclassified)'} -> {after}")
            print(f"{content_id}\t" + "; ".join(changes))
        print(f"dry run: {len(candidates)} contents would be reclassified with {described}", file=sys.stderr)
        return 0
    return _enqueue_and_wait(config, args, targets, [content_id for content_id, _ in candidates])


def _enqueue_and_wait(
    config: Settings, args: argparse.Namespace, targets: dict[str, str], ids: list[int]
) -> int:
    from jobs.progress import failure_cause, wait_for_jobs
    from jobs.queue import enqueue_reclassifications
    from services.redis_connection import connect_for_jobs, redis_url

    connection = connect_for_jobs(redis_url(config))
    report = enqueue_reclassifications(
        connection, config.database_url, ids, force=args.force, model=args.model
    )
    described = ", ".join(f"{name} {version}" for name, version in targets.items())
    print(f"reclassify with {described}: {report.describe()}")
    if not args.wait or not report.job_ids:
        return 0
    sys.stdout.flush()
    wait = wait_for_jobs(
        connection, report.job_ids, config.queue_name, show_progress=sys.stderr.isatty(), timeout=args.timeout
    )
    from rq.job import Job, JobStatus

    from jobs.queue import SERIALIZER

    with session_scope(config.database_url) as session:
        versions = current_versions(session, report.content_ids, list(targets))
    outcome: Counter[str] = Counter()
    failed: dict[int, str] = {}
    jobs = Job.fetch_many(report.job_ids, connection, serializer=SERIALIZER)
    for content_id, job in zip(report.content_ids, jobs, strict=True):
        have = versions.get(content_id, {})
        if all(have.get(name) == target for name, target in targets.items()):
            outcome["classified by the configured model" + ("s" if len(targets) > 1 else "")] += 1
            continue
        status = job.get_status(refresh=False) if job is not None else None
        if status == JobStatus.FAILED:
            result = job.latest_result()
            failed[content_id] = failure_cause(result.exc_string if result else None)
        elif status == JobStatus.FINISHED:
            value = job.return_value()
            outcome[f"skipped {value.get('reason', '?')}" if isinstance(value, dict) else "finished"] += 1
        else:
            outcome["still waiting"] += 1
    print(
        f"total {len(report.content_ids)}: "
        + ", ".join(f"{what} {count}" for what, count in sorted(outcome.items()))
        + f", failed {len(failed)} in {wait.elapsed:.1f}s"
    )
    for content_id, cause in sorted(failed.items()):
        print(f"  failed content {content_id}: {cause}")
    return EXIT_FAILURE if failed or outcome["still waiting"] else 0
