"""A FinbertWorker's heartbeat: what RQ's heartbeat writes, with the database the worker serves, sent
in one round trip (RQ sends its three commands one by one), on fakeredis and a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis
from redis.client import Pipeline

import config
from jobs.rq_seam import WORKER_DATABASE_FIELD, worker_database
from workers.worker import FinbertWorker

DATABASE = "0a1b2c3d4e"


def _worker(connection: Redis, tmp_path: Path) -> FinbertWorker:
    settings = config.load_settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    worker = FinbertWorker(["ml_classification"], connection=connection, config=settings)
    worker.register_birth()
    return worker


def test_a_heartbeat_writes_rqs_fields_and_the_database_in_one_round_trip(
    fake_or_real_redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = fake_or_real_redis
    worker = _worker(connection, tmp_path)
    worker._database_id = DATABASE
    connection.sadd(worker.executions_key, "some-job:some-execution")
    connection.persist(worker.key)
    connection.hdel(worker.key, "last_heartbeat", WORKER_DATABASE_FIELD)
    single_commands: list[str] = []
    pipelines: list[int] = []
    execute_command, execute = Redis.execute_command, Pipeline.execute

    def counted_command(self, *args, **options):
        if not isinstance(self, Pipeline):
            single_commands.append(str(args[0]))
        return execute_command(self, *args, **options)

    def counted_pipeline(self, *args, **options):
        pipelines.append(len(self.command_stack))
        return execute(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_pipeline)

    worker.heartbeat()

    monkeypatch.undo()
    assert single_commands == []
    assert pipelines == [4]  # RQ's HSET, EXPIRE, EXPIRE, then the database field
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
