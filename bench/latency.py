"""Idle latency: one warm, idle worker; single items enqueued one at a time.

For each item: enqueue its unique job (the product's ``enqueue_ids``), poll the job's status in
Redis about every millisecond until it is finished, then confirm the classification row is in the
database. The job is marked finished only after the job function has committed its row, so the
status poll ends no earlier than the store. RQ's own timestamps split the time into waiting in the
queue (enqueued to started) and running (started to ended); the row's audit gives its forward pass
(``model_seconds``), and each item's total less its forward pass is what the pipeline adds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import percentile
from bench.pipeline import Deployment, PipelineError, import_texts

#: seconds between two status polls.
POLL_INTERVAL = 0.001
#: seconds one item may take before the measurement is abandoned.
ITEM_TIMEOUT = 30.0
#: seconds the worker is left idle before each item.
IDLE_GAP = 0.05


def _stored_model_seconds(database_url: str, content_id: int) -> float | None:
    """The stored classification's forward-pass seconds (its audit's ``model_seconds``), or None while
    no classification of ``content_id`` is stored."""
    from sqlalchemy import select

    from db.models import Classification
    from db.session import engine_for

    statement = select(Classification.meta).where(Classification.content_id == content_id)
    with engine_for(database_url).connect() as connection:
        row = connection.execute(statement).first()
    return None if row is None else float(row[0]["processing"]["model_seconds"])


def measure_latency(setup: Deployment, texts: list[str], work_dir: Path) -> dict[str, Any]:
    """Enqueue-to-stored milliseconds for each of ``texts``, one at a time, with p50 and p95."""
    from rq.job import Job

    from db.identity import database_id
    from jobs.queue import SERIALIZER, enqueue_ids, job_id_for
    from services.redis_connection import connect

    if len(setup.workers) != 1:
        raise ValueError("latency is measured with exactly one worker")
    connection = connect(setup.redis_url)
    identity = database_id(setup.database_url)
    ids = import_texts(setup.database_url, texts, work_dir / setup.label, "latency")
    totals: list[float] = []
    forwards: list[float] = []
    waits: list[float] = []
    runs: list[float] = []
    for content_id in ids:
        time.sleep(IDLE_GAP)
        key = Job.key_for(job_id_for(content_id, identity))
        started = time.perf_counter()
        report = enqueue_ids(connection, setup.database_url, [content_id])
        if report.enqueued != [content_id]:
            raise PipelineError(f"content {content_id} was not enqueued: {report.describe()}")
        deadline = started + ITEM_TIMEOUT
        while (status := connection.hget(key, "status")) != b"finished":
            if status == b"failed" or time.perf_counter() > deadline:
                raise PipelineError(f"job for content {content_id} ended as {status!r}")
            time.sleep(POLL_INTERVAL)
        elapsed = time.perf_counter() - started
        # Never expected to loop: confirm the row (and read how long its forward pass took).
        while (model_seconds := _stored_model_seconds(setup.database_url, content_id)) is None:
            if time.perf_counter() > deadline:
                raise PipelineError(f"job for content {content_id} finished but no row was stored")
            time.sleep(POLL_INTERVAL)
        totals.append(elapsed * 1000)
        forwards.append(model_seconds * 1000)
        job = Job.fetch(job_id_for(content_id, identity), connection=connection, serializer=SERIALIZER)
        if job.enqueued_at and job.started_at and job.ended_at:
            waits.append((job.started_at - job.enqueued_at).total_seconds() * 1000)
            runs.append((job.ended_at - job.started_at).total_seconds() * 1000)
    return {
        "label": setup.label,
        "database": setup.database,
        "precision": setup.precision,
        "items": len(totals),
        "p50_ms": percentile(totals, 0.5),
        "p95_ms": percentile(totals, 0.95),
        "max_ms": max(totals),
        "queue_wait_p50_ms": percentile(waits, 0.5) if waits else None,
        "job_run_p50_ms": percentile(runs, 0.5) if runs else None,
        "forward_p50_ms": percentile(forwards, 0.5),
        "besides_model_p50_ms": percentile([t - f for t, f in zip(totals, forwards, strict=True)], 0.5),
        "all_ms": totals,
    }
