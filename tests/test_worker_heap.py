"""A started worker leaves what it loaded (torch, transformers, its models) out of the garbage
collector, so a full collection scans only what its jobs made (``gc.freeze`` in ``bootstrap``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

import config
from db.migrate import upgrade
from jobs.queue import classification_queue
from model.warm import use_classifier
from workers.worker import FinbertWorker


class _Stub:
    model_version = "stub"
    batch_size = 8


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the session collects as usual


@pytest.mark.integration
def test_a_started_worker_freezes_what_it_loaded(unfrozen: None, redis_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    connection = Redis.from_url(redis_url)
    settings = config.load_settings({"DATABASE_URL": url, "REDIS_URL": redis_url})
    worker = FinbertWorker([classification_queue(connection)], connection=connection, config=settings)
    use_classifier(_Stub())  # type: ignore[arg-type]
    assert gc.get_freeze_count() == 0
    loaded: list[object] = [object()]  # stands for what the worker loaded (a list is always tracked)
    assert gc.is_tracked(loaded)
    try:
        worker.bootstrap()

        frozen = gc.get_freeze_count()
        assert frozen > 100_000, frozen  # the interpreter's modules at least
        garbage = []
        garbage.append(garbage)  # a cycle made after the start is still collected
        del garbage
        assert gc.collect() >= 1
        # Frozen objects freed by reference count (a finished thread's, say) leave the count, so
        # it is not compared exactly: what was loaded stays out of every generation a collection
        # scans.
        assert gc.get_freeze_count() > 100_000
        assert not any(tracked is loaded for tracked in gc.get_objects())
    finally:
        use_classifier(None)
        worker.register_death()
        connection.flushall()
        connection.close()
