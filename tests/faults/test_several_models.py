"""Several models side by side under faults, with real workers, PostgreSQL and tiny models of different
label orders (one of them two-label): a ``kill -9`` mid-batch, a reclassification of one model with a
kill in its middle, and a third model added to a live system. The same accounting as the rest of the
suite, per model: lost 0, doubled 0, and every classified content's consensus made of exactly its
models' current rows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config import load_settings
from db.models import Classification, ClassificationHistory
from db.session import session_scope
from jobs.queue import classification_queue, enqueue_reclassifications
from jobs.sweep import hourly_sweep
from tests.faults.conftest import FULL_BATCHES, FaultRun, post_texts
from tests.fixtures_model import models_setting

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTENTS = 192
THREE = ("finbert", "roberta", "sst2")


def with_models(run: FaultRun, models: dict[str, Path], *names: str) -> dict[str, str]:
    """The workers' environment for these models; the run accounts for them from now on."""
    run.models = names
    return {"VOLFEFE_MODELS": models_setting(models, *names)}


def rows_by_model(url: str) -> dict[str, int]:
    with session_scope(url) as session:
        return dict(
            session.execute(select(Classification.model, func.count()).group_by(Classification.model)).all()
        )


def assert_accounted(run: FaultRun, contents: int) -> None:
    result = run.account()
    assert result.lost == [] and result.doubled == [] and result.inconsistent == [], result
    assert result.classified == contents and not result.failed and not result.stranded, result
    assert rows_by_model(run.database_url) == dict.fromkeys(run.models, contents)


def test_kill_9_mid_batch_with_three_models(
    fault_run: FaultRun, tiny_models: dict[str, Path], record_metrics
) -> None:
    env = with_models(fault_run, tiny_models, *THREE)
    ids = fault_run.add_contents(post_texts(CONTENTS, seed=16))
    first = fault_run.start_worker(env={**env, **FULL_BATCHES})
    fault_run.enqueue(ids[: CONTENTS // 3])
    fault_run.wait(lambda: fault_run.classified() == CONTENTS // 3, 90, "the first third classified")
    connection = fault_run.redis()
    started_key = classification_queue(connection).started_job_registry.key

    with fault_run.writes_held():  # the next batch is caught at its write, then killed
        fault_run.enqueue(ids[CONTENTS // 3 :])
        fault_run.wait(lambda: fault_run.blocked_writers() > 0, 60, "the worker to be mid-batch")
        fault_run.kill_group(first)
        killed_at = time.time()
    abandoned = len(connection.zrange(started_key, 0, -1))
    connection.close()
    assert abandoned > 0

    fault_run.start_worker(env=env)
    fault_run.wait(
        lambda: fault_run.classified() >= CONTENTS, 180, "every content classified by three models"
    )
    fault_run.wait_settled(CONTENTS, 30)
    assert_accounted(fault_run, CONTENTS)
    record_metrics(
        "16a kill -9 mid-batch, three models",
        contents=CONTENTS,
        abandoned_jobs=abandoned,
        rows=sum(rows_by_model(fault_run.database_url).values()),
        recovery_s=round(fault_run.last_stored() - killed_at, 1),
        lost=0,
        doubled=0,
    )


def test_reclassifying_one_model_with_a_kill_in_its_middle(
    fault_run: FaultRun, tiny_models: dict[str, Path], record_metrics
) -> None:
    env = with_models(fault_run, tiny_models, *THREE)
    url = fault_run.database_url
    ids = fault_run.add_contents(post_texts(CONTENTS, seed=17))
    first = fault_run.start_worker(env={**env, **FULL_BATCHES})
    fault_run.enqueue(ids)
    fault_run.wait(lambda: fault_run.classified() == CONTENTS, 120, "every content classified")
    fault_run.wait_settled(CONTENTS, 30)
    with session_scope(url) as session:
        before = {(row.content_id, row.model): row.id for row in session.scalars(select(Classification))}

    connection = fault_run.redis()
    with fault_run.writes_held():  # the first reclassification batch is caught at its write, then killed
        report = enqueue_reclassifications(connection, url, ids, force=True, model="roberta")
        assert sorted(report.enqueued) == sorted(ids)
        fault_run.wait(lambda: fault_run.blocked_writers() > 0, 60, "the worker to be mid-batch")
        fault_run.kill_group(first)
        killed_at = time.time()
    connection.close()
    fault_run.start_worker(env=env)

    def history() -> dict[str, int]:
        with session_scope(url) as session:
            return dict(
                session.execute(
                    select(ClassificationHistory.model, func.count()).group_by(ClassificationHistory.model)
                ).all()
            )

    fault_run.wait(lambda: history().get("roberta", 0) >= CONTENTS, 180, "every roberta row replaced")
    fault_run.wait(lambda: fault_run.live_jobs() == 0, 60, "the reclassification jobs to end")
    assert history() == {"roberta": CONTENTS}  # each replaced once: none twice, no other model touched
    with session_scope(url) as session:
        after = {(row.content_id, row.model): row.id for row in session.scalars(select(Classification))}
    assert after == before  # one current row per content and model throughout, updated in place
    assert_accounted(fault_run, CONTENTS)
    record_metrics(
        "16b kill -9 mid-reclassification of one model",
        contents=CONTENTS,
        replaced=history()["roberta"],
        recovery_s=round(fault_run.last_stored() - killed_at, 1),
        lost=0,
        doubled=0,
    )


def test_adding_a_third_model_to_a_live_system(
    fault_run: FaultRun, tiny_models: dict[str, Path], record_metrics
) -> None:
    """Workers on two models classify a backlog; midway the workers are replaced one by one by workers
    with a third model, posts keep arriving, and the hourly sweep backfills the third model."""
    two = with_models(fault_run, tiny_models, "finbert", "roberta")
    url = fault_run.database_url
    ids = fault_run.add_contents(post_texts(CONTENTS, seed=18))
    old = [fault_run.start_worker(env={**two, **FULL_BATCHES}) for _ in range(2)]
    fault_run.enqueue(ids)
    fault_run.wait(lambda: fault_run.classified() >= CONTENTS // 3, 90, "a third classified by two models")

    three = with_models(fault_run, tiny_models, *THREE)  # from now on, three models count
    added_at = time.time()
    for worker in old:  # a rolling restart: stop one (warm: its batch is handed back), start one
        assert worker.stop() == 0
        fault_run.start_worker(env=three)
    more = fault_run.add_contents(post_texts(CONTENTS // 4, seed=19))
    fault_run.enqueue(more)
    total = CONTENTS + len(more)
    fault_run.wait(lambda: fault_run.live_jobs() == 0, 180, "the enqueued jobs to end")
    # Contents the two-model workers finished lack sst2: the hourly sweep enqueues them (a bounded
    # backfill, here all at once), new posts first.
    config = load_settings({"DATABASE_URL": url, "VOLFEFE_MODELS": three["VOLFEFE_MODELS"]})
    connection = fault_run.redis()
    report, backfill = hourly_sweep(connection, config)
    connection.close()
    assert backfill > 0 and report.stopped is None
    fault_run.wait(lambda: fault_run.classified() >= total, 180, "every content classified by three models")
    fault_run.wait_settled(total, 60)
    assert_accounted(fault_run, total)
    record_metrics(
        "16c a third model added to a live system",
        contents=total,
        backfilled=backfill,
        seconds_to_all_three=round(fault_run.last_stored() - added_at, 1),
        lost=0,
        doubled=0,
    )
