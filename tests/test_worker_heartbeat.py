"""A FinbertWorker's heartbeat: what RQ's heartbeat writes, with the database the worker serves, sent
in one round trip (RQ sends its three commands one by one), on fakeredis and a real redis-server."""

from __future__ import annotations

from pathlib import Path

from redis import Redis

import config
from jobs.rq_seam import WORKER_DATABASE_FIELD, worker_database
from tests.redis_trips import counted_round_trips
from workers.worker import FinbertWorker

DATABASE = "0a1b2c3d4e"


def _worker(connection: Redis, tmp_path: Path) -> FinbertWorker:
    settings = config.load_settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    worker = FinbertWorker(["ml_classification"], connection=connection, config=settings)
    worker.register_birth()
    return worker


def test_a_heartbeat_writes_rqs_fields_and_the_database_in_one_round_trip(
    fake_or_real_redis: Redis, tmp_path: Path
) -> None:
    connection = fake_or_real_redis
    worker = _worker(connection, tmp_path)
    worker._database_id = DATABASE
    connection.sadd(worker.executions_key, "some-job:some-execution")
    connection.persist(worker.key)
    connection.hdel(worker.key, "last_heartbeat", WORKER_DATABASE_FIELD)
    with counted_round_trips() as sends:
        worker.heartbeat()

    assert sends == [["HSET", "EXPIRE", "EXPIRE", "HSET"]]  # RQ's three, then the database field
    assert connection.hget(worker.key, "last_heartbeat")
    assert worker_database(connection, worker.key) == DATABASE
    assert 0 < connection.ttl(worker.key) <= worker.worker_ttl + 60
    assert 0 < connection.ttl(worker.executions_key) <= worker.worker_ttl + 60


def test_a_heartbeat_before_the_database_is_bound_writes_only_rqs_fields(
    fake_or_real_redis: Redis, tmp_path: Path
) -> None:
    connection = fake_or_real_redis
    worker = _worker(connection, tmp_path)
    connection.persist(worker.key)

    worker.heartbeat()

    assert worker_database(connection, worker.key) is None
    assert 0 < connection.ttl(worker.key) <= worker.worker_ttl + 60
