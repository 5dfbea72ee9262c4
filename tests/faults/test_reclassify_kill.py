"""A worker killed (``kill -9``) in the middle of a reclassification batch: nothing is lost, nothing is
replaced twice, and every content keeps exactly one current classification throughout."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from db.consensus_store import refresh_consensus
from db.models import Classification, ClassificationHistory
from db.session import session_scope
from db.store import NewClassification, save_classifications
from jobs.queue import enqueue_reclassifications
from model.classifier import configured_model_version
from tests.faults.conftest import FULL_BATCHES, FaultRun, post_texts

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTENTS = 160
OLD = "an-older-model+fp32"


def counts(url: str, new: str) -> tuple[int, int, int, int]:
    """(contents by the new model, current rows, contents with more than one current row, history rows)."""
    with session_scope(url) as session:
        by_new = session.scalar(select(func.count()).where(Classification.model_version == new)) or 0
        rows = session.scalar(select(func.count()).select_from(Classification)) or 0
        doubled = session.scalar(
            select(func.count()).select_from(
                select(Classification.content_id)
                .group_by(Classification.content_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
        history = session.scalar(select(func.count()).select_from(ClassificationHistory)) or 0
    return by_new, rows, doubled or 0, history


def test_kill_9_mid_reclassification_loses_nothing(fault_run: FaultRun) -> None:
    url = fault_run.database_url
    ids = fault_run.add_contents(post_texts(CONTENTS))
    with session_scope(url) as session:
        scores = {"positive": 0.1, "negative": 0.1, "neutral": 0.8}
        save_classifications(
            session,
            [NewClassification(content_id, "finbert", "neutral", 0.8, OLD, scores) for content_id in ids],
        )
        refresh_consensus(session, ids, {"finbert": 1.0}, 0.6)
    new = configured_model_version(str(fault_run.model_dir), "fp32")
    first = fault_run.start_worker(env=FULL_BATCHES)
    connection = fault_run.redis()
    with fault_run.writes_held():  # the first batch is caught at its write, then its worker killed
        report = enqueue_reclassifications(connection, url, ids)
        assert sorted(report.enqueued) == sorted(ids)
        fault_run.wait(lambda: fault_run.blocked_writers() > 0, 60, "the worker to be mid-batch")
        fault_run.kill_group(first)
        killed_at = time.time()
    assert counts(url, new) == (0, CONTENTS, 0, 0)  # the killed batch wrote nothing

    fault_run.start_worker()
    fault_run.wait(lambda: counts(url, new)[0] == CONTENTS, 180, "every content reclassified after the kill")
    by_new, rows, doubled, history = counts(url, new)
    connection.close()
    assert (by_new, rows, doubled) == (CONTENTS, CONTENTS, 0)  # one current classification each, always
    assert history == CONTENTS  # each old classification kept once: no content replaced twice
    assert time.time() - killed_at < 180
