"""volfefe reclassify: stale selection, dry run, one current classification with history, races,
and the whole path through the queue with real worker processes (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from db.identity import database_id
from db.models import Classification, ClassificationHistory, Content
from db.queries import reclassification_candidates
from db.session import engine_for, session_scope
from db.store import NewClassification, replace_classifications, save_classifications
from jobs.queue import enqueue_ids
from model.classifier import Prediction, configured_model_version
from tests.processes import READY_LINE, WorkerProcess, wait_for
from tools.random_model import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
OLD = "old-model+fp32"
NEW = "new-model+fp32"


def prediction(sentiment: str = "positive", confidence: float = 0.8) -> Prediction:
    rest = (1 - confidence) / 2
    scores = {"positive": rest, "negative": rest, "neutral": rest, sentiment: confidence}
    return Prediction(sentiment, confidence, scores)


def new(
    content_id: int, version: str, sentiment: str = "positive", model: str = "finbert"
) -> NewClassification:
    made = prediction(sentiment)
    return NewClassification(content_id, model, made.sentiment, made.confidence, version, made.raw_scores)


def add_classified(url: str, count: int, version: str = OLD) -> list[int]:
    with session_scope(url) as session:
        contents = [
            Content(source="t", external_id=f"r{index}", text=f"Stocks rally {index}")
            for index in range(count)
        ]
        session.add_all(contents)
        session.flush()
        ids = [content.id for content in contents]
        save_classifications(session, [new(content_id, version) for content_id in ids])
    return ids


def current_rows(url: str) -> dict[int, list[str]]:
    with session_scope(url) as session:
        rows: dict[int, list[str]] = {}
        for content_id, version in session.execute(
            select(Classification.content_id, Classification.model_version)
        ):
            rows.setdefault(content_id, []).append(version)
        return rows


def history(url: str) -> list[tuple[int, str]]:
    with session_scope(url) as session:
        return sorted(
            session.execute(select(ClassificationHistory.content_id, ClassificationHistory.model_version))
        )


@pytest.fixture
def db(migrated_db: str) -> str:
    return migrated_db


def test_stale_selection_is_what_another_model_made(db: str) -> None:
    old = add_classified(db, 3, OLD)
    with session_scope(db) as session:
        save_classifications(session, [new(old[0], NEW)])  # already has one: kept as it is
        stale = reclassification_candidates(session, stale_for={"finbert": NEW})
        assert [content_id for content_id, _ in stale] == old
        assert reclassification_candidates(session, stale_for={"finbert": OLD}) == []
        assert reclassification_candidates(session, ids=[old[1], 999_999]) == [(old[1], {"finbert": OLD})]
        assert len(reclassification_candidates(session)) == 3
        # Per model: another model's rows are stale or not on their own.
        save_classifications(session, [new(old[1], OLD, model="prosus"), new(old[2], NEW, model="prosus")])
        both = {"finbert": OLD, "prosus": NEW}
        assert reclassification_candidates(session, ["finbert", "prosus"], stale_for=both) == [
            (old[1], {"prosus": OLD})
        ]
        assert reclassification_candidates(session, ["prosus"], ids=[old[0], old[1]]) == [
            (old[0], {}),
            (old[1], {"prosus": OLD}),
        ]


def test_replacing_keeps_one_current_row_and_the_old_one_in_history(db: str) -> None:
    ids = add_classified(db, 3, OLD)
    with session_scope(db) as session:
        results = replace_classifications(
            session, [new(ids[0], NEW, "negative"), new(ids[1], NEW, "neutral")]
        )
    assert results == {(ids[0], "finbert"): "replaced", (ids[1], "finbert"): "replaced"}
    rows = current_rows(db)
    assert rows == {ids[0]: [NEW], ids[1]: [NEW], ids[2]: [OLD]}
    assert history(db) == [(ids[0], OLD), (ids[1], OLD)]
    with session_scope(db) as session:
        # By this model already: kept, unless forced.
        assert replace_classifications(session, [new(ids[0], NEW)]) == {(ids[0], "finbert"): "current"}
        forced = replace_classifications(session, [new(ids[0], NEW)], force={(ids[0], "finbert")})
        assert forced == {(ids[0], "finbert"): "replaced"}
    assert history(db) == sorted([(ids[0], OLD), (ids[0], NEW), (ids[1], OLD)])


@pytest.mark.integration
def test_racing_reclassifications_and_a_normal_classification_leave_one_current_row(
    postgres_url: str,
) -> None:
    from db.migrate import upgrade

    upgrade(postgres_url)
    try:
        ids = add_classified(postgres_url, 40, OLD)
        with session_scope(postgres_url) as session:
            fresh = Content(source="t", external_id="fresh", text="Shares fall")
            session.add(fresh)
            session.flush()
            fresh_id = fresh.id
        barrier = threading.Barrier(3)
        errors: list[BaseException] = []

        def reclassify() -> None:
            try:
                barrier.wait()
                with session_scope(postgres_url) as session:
                    replace_classifications(session, [new(i, NEW) for i in [*ids, fresh_id]])
            except BaseException as error:  # reported below
                errors.append(error)

        def classify() -> None:
            try:
                barrier.wait()
                with session_scope(postgres_url) as session:
                    save_classifications(session, [new(fresh_id, OLD)])
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=reclassify),
            threading.Thread(target=reclassify),
            threading.Thread(target=classify),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        rows = current_rows(postgres_url)
        assert all(len(versions) == 1 for versions in rows.values())
        assert {content_id: versions[0] for content_id, versions in rows.items()} == dict.fromkeys(
            [*ids, fresh_id], NEW
        )
        # Each old classification went to history exactly once: the second reclassification found
        # the new model's row current and kept it.
        old_in_history = [content_id for content_id, version in history(postgres_url) if version == OLD]
        assert sorted(old_in_history) == sorted(ids) or sorted(old_in_history) == sorted([*ids, fresh_id])
    finally:
        engine_for(postgres_url).dispose()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("second-model") / "model")


@pytest.fixture
def worker_with(tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(redis_url: str, url: str, model: Path) -> WorkerProcess:
        worker = WorkerProcess(redis_url, url, model, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.start(wait_ready=False)
        wait_for(lambda: READY_LINE in worker.log() or not worker.running, 90, what="the worker's model")
        assert worker.running, worker.log()[-2000:]
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.mark.integration
def test_reclassify_through_the_queue_after_a_model_upgrade(
    database_url: str, redis_url: str, tiny_model_dir: Path, second_model: Path, worker_with, tmp_path: Path
) -> None:
    from db.migrate import upgrade

    upgrade(database_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "FINBERT_PRECISION": "fp32",
        "HF_HUB_OFFLINE": "1",
        "VOLFEFE_DATA_DIR": str(tmp_path / "var"),
    }
    try:
        with session_scope(database_url) as session:
            contents = [
                Content(source="t", external_id=f"p{i}", text=f"Stocks rally on earnings {i}")
                for i in range(30)
            ]
            contents.append(Content(source="t", external_id="empty", text="<p></p>"))
            session.add_all(contents)
            session.flush()
            ids = [content.id for content in contents]
        connection = Redis.from_url(redis_url)
        first = worker_with(redis_url, database_url, tiny_model_dir)
        report = enqueue_ids(connection, database_url, ids)
        wait_for(lambda: len(current_rows(database_url)) == 30, 90, what="the first classification")
        first.stop()
        old_version = configured_model_version(str(tiny_model_dir), "fp32")
        new_version = configured_model_version(str(second_model), "fp32")
        assert {v[0] for v in current_rows(database_url).values()} == {old_version}
        assert report.database_id == database_id(database_url)

        upgraded = {**env, "FINBERT_MODEL": str(second_model)}
        before = current_rows(database_url)
        dry = _cli(["reclassify", "--dry-run"], upgraded)
        assert dry.returncode == 0, dry.stderr
        assert "30 contents would be reclassified" in dry.stderr
        assert len(dry.stdout.splitlines()) == 30
        assert current_rows(database_url) == before and history(database_url) == []

        worker_with(redis_url, database_url, second_model)
        done = _cli(["reclassify", "--wait", "--timeout", "120"], upgraded)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "classified by the configured model 30" in done.stdout
        rows = current_rows(database_url)
        assert rows == {content_id: [new_version] for content_id in ids[:30]}
        assert history(database_url) == sorted((content_id, old_version) for content_id in ids[:30])
        with session_scope(database_url) as session:
            assert session.scalar(select(func.count()).select_from(Classification)) == 30

        # Nothing stale is left: a second run enqueues nothing and the hourly sweep never reclassifies.
        again = _cli(["reclassify", "--wait"], upgraded)
        assert again.returncode == 0 and "enqueued 0" in again.stdout
        from jobs.sweep import sweep

        assert sweep(connection, database_url).enqueued == []
        assert len(history(database_url)) == 30
        connection.close()
    finally:
        engine_for(database_url).dispose()


def test_all_needs_force(db: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {**os.environ, "DATABASE_URL": db, "FINBERT_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1"}
    result = _cli(["reclassify", "--all"], env)
    assert result.returncode == 2
    assert "--force" in result.stderr and "Traceback" not in result.stderr
