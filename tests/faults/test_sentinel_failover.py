"""Redis failover under busy workers: a primary, an asynchronous replica and three real sentinels
(issue 19). The workers, the enqueuer and the sweep reach Redis through a ``redis+sentinel://`` URL;
the primary is SIGKILLed mid-run, the sentinels promote the replica, the workers follow it.

What an asynchronous replica loses: the writes the primary acknowledged but had not yet copied (the
replication offset the replica lagged by at the kill). For this queue that means jobs enqueued, taken
or finished in that last moment: a job whose hash is gone on the new primary is never run, and a
finished one is run again. The project's answer is the database's: the sweep (hourly in
``scheduler.py``; here once, after the failover) enqueues every post the database says is unclassified
and that has no job, and a job run twice writes one row. Figures: the lag, the posts without a job
after the failover, what the sweep enqueued, and lost and doubled: 0 and 0.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.sentinel

from db.migrate import upgrade
from jobs.sweep import sweep
from services.redis_client import redis_client
from services.redis_server import HOST, RedisServer, find_redis_server, free_port
from tests.faults.conftest import FaultRun, post_texts
from tests.faults.outage_support import kill_redis
from tests.processes import wait_for
from tests.servers import PostgresServer

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

SERVICE = "volfefe"
SENTINELS = 3
QUORUM = 2
#: milliseconds without an answer before a sentinel calls the primary down (Redis's default: 30000).
DOWN_AFTER_MS = 1000
POSTS = 2000
#: seconds the sentinels may take to agree and promote the replica.
FAILOVER_TIMEOUT = 60.0
#: rq's option that makes its commands read a redis+sentinel URL (scripts/activate exports it).
CONNECTION_CLASS = ["--connection-class", "services.redis_client.BoundedRedis"]


def _sentinel_command() -> list[str]:
    binary = shutil.which("redis-sentinel")
    return [binary] if binary else [find_redis_server(), "--sentinel"]  # the same program, in sentinel mode


class Sentinels:
    """Real redis-sentinel processes watching ``primary`` as the service SERVICE."""

    def __init__(self, folder: Path, primary_port: int) -> None:
        self.folder = folder
        self.primary_port = primary_port
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for index in range(SENTINELS):
            port = free_port()
            state = self.folder / f"sentinel-{index}"
            state.mkdir(parents=True)
            conf = state / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndaemonize no\ndir {state}\nlogfile {state / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} {HOST} {self.primary_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.processes.append(
                subprocess.Popen(
                    [*_sentinel_command(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
                )
            )
            self.ports.append(port)

    def client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.ports[index], socket_timeout=2, decode_responses=True)

    def primary_port_seen(self) -> int | None:
        """The primary's port as a client finds it: redis-py's discovery (SENTINEL MASTERS, a primary
        that is neither down nor mid-failover). ``get-master-addr-by-name`` names the promoted replica
        earlier, while the failover is still reconfiguring, when a client finds no primary yet."""
        sentinel = redis.sentinel.Sentinel(
            [(HOST, port) for port in self.ports], sentinel_kwargs={"socket_timeout": 2}
        )
        try:
            return int(sentinel.discover_master(SERVICE)[1])
        except redis.RedisError:  # MasterNotFoundError included
            return None
        finally:
            for client in sentinel.sentinels:
                client.close()

    def ready(self) -> bool:
        """Every sentinel knows the replica and the other sentinels."""
        try:
            for index in range(SENTINELS):
                state = self.client(index).sentinel_master(SERVICE)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < SENTINELS - 1:
                    return False
        except (redis.RedisError, KeyError, ValueError):
            return False
        return True

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, Sentinels]]:
    primary = RedisServer(tmp_path / "primary")
    replica = RedisServer(tmp_path / "replica")
    primary.start()
    replica.start()
    sentinels = Sentinels(tmp_path / "sentinels", int(primary.port or 0))
    try:
        redis.Redis.from_url(replica.url).execute_command("REPLICAOF", HOST, str(primary.port))
        wait_for(
            lambda: redis.Redis.from_url(replica.url).info("replication").get("master_link_status") == "up",
            30,
            what="the replica to sync",
        )
        sentinels.start()
        wait_for(sentinels.ready, 60, interval=0.2, what="the sentinels to know the replica and each other")
        yield primary, replica, sentinels
    finally:
        sentinels.stop()
        for server in (primary, replica):
            with contextlib.suppress(Exception):
                server.stop()


def _lag_bytes(primary: RedisServer) -> int:
    """How far (bytes of the replication stream) the replica is behind the primary now."""
    info = redis.Redis.from_url(primary.url).info("replication")
    replicas = [value for key, value in info.items() if key.startswith("slave") and isinstance(value, dict)]
    return max((int(info["master_repl_offset"]) - int(r["offset"]) for r in replicas), default=-1)


def test_primary_killed_under_busy_workers_sentinel_promotes_the_replica_and_work_goes_on(
    replicated,
    postgres_server: PostgresServer,
    postgres_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    record_metrics,
) -> None:
    primary, replica, sentinels = replicated
    upgrade(postgres_url)
    run = FaultRun(postgres_url, sentinels.url, tiny_model_dir, tmp_path, postgres_server)
    try:
        ids = run.add_contents(post_texts(POSTS, seed=53))
        for _ in range(2):
            run.start_worker(wait_ready=False, args=CONNECTION_CLASS)
        for worker in run.workers:
            wait_for(
                lambda w=worker: "Worker: model" in w.log() or not w.running, 90, what="a worker to load"
            )
            assert worker.running, worker.log()[-3000:]
        report = run.enqueue(ids)
        assert len(report.enqueued) == POSTS, report.describe()
        run.wait(lambda: run.classified() >= POSTS // 5, 90, "a fifth of the posts classified")
        lag = _lag_bytes(primary)
        kill_redis(primary)
        killed_at = time.monotonic()
        at_kill = run.classified()
        run.wait(
            lambda: sentinels.primary_port_seen() == replica.port, FAILOVER_TIMEOUT, "the replica's promotion"
        )
        failover_s = time.monotonic() - killed_at
        run.wait(lambda: run.classified() > at_kill, 60, "the workers to go on against the new primary")
        resumed_s = time.monotonic() - killed_at
        # What the failover lost shows in the database: unclassified posts whose job the new primary
        # does not hold. The sweep enqueues exactly those.
        connection = redis_client(sentinels.url)
        try:
            swept = sweep(connection, postgres_url)
        finally:
            connection.close()
        run.wait_settled(POSTS, 180, "every post after the failover")
        result = run.account()
        record_metrics(
            "net 6 sentinel failover under busy workers",
            posts=POSTS,
            classified_at_kill=at_kill,
            replica_lag_bytes_at_kill=lag,
            failover_s=round(failover_s, 1),
            work_resumed_after_kill_s=round(resumed_s, 1),
            sweep_enqueued_after_failover=len(swept.enqueued),
            attempts_used=run.retried_jobs(ids),
            workers_alive=sum(w.running for w in run.workers),
            lost=len(result.lost),
            doubled=len(result.doubled),
            stranded=len(result.stranded),
            failed=len(result.failed),
        )
        assert at_kill < POSTS, "the run ended before the kill: nothing was tested"
        assert all(w.running for w in run.workers), run.logs()
        assert result.lost == [] and result.doubled == [] and result.stranded == [], f"{result}\n{run.logs()}"
        assert result.classified == POSTS and not result.failed, result
    finally:
        for worker in run.workers:
            if worker.running:
                worker.stop(timeout=15)
            run.kill_group(worker)
