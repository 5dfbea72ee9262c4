"""SECURITY.md's ACL line is enough for the whole queue, and refuses what a leaked password must not do.

The line is read from SECURITY.md itself, applied to a real redis-server, and everything then
runs as that user: unique enqueue (RQ's Lua script), a real ``rq worker --with-scheduler`` that
finishes, fails and retries jobs, rq-scheduler's registration, and the web process (pages and a
same-origin POST). Then the commands ``@dangerous`` holds are tried and must be refused.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Queue, Retry
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq_scheduler import Scheduler

from services.redis_server import RedisServer
from tests.processes import wait_for
from tests.web_process import WebProcess, basic_auth, web_environment

pytestmark = pytest.mark.integration

SECURITY_MD = Path(__file__).resolve().parents[1] / "SECURITY.md"
RQ = str(Path(sys.executable).with_name("rq"))
QUEUE = "acl-test"
PLACEHOLDER = "CHANGE-ME"
#: seconds for this test's jobs (one waits out a 1 s retry interval).
JOBS_TIMEOUT = 60.0


def documented_acl_line() -> str:
    (line,) = [
        line.strip()
        for line in SECURITY_MD.read_text().splitlines()
        if line.strip().startswith("ACL SETUSER")
    ]
    return line


def test_the_documented_acl_user_runs_the_queue_and_nothing_dangerous(tmp_path: Path) -> None:
    admin_password = secrets.token_hex(16)
    user_password = secrets.token_hex(16)
    line = documented_acl_line()
    assert PLACEHOLDER in line
    with RedisServer(tmp_path / "redis", password=admin_password) as server:
        admin = redis.Redis.from_url(server.url)
        assert admin.execute_command(*shlex.split(line.replace(PLACEHOLDER, user_password))) in (
            b"OK",
            "OK",
            True,
        )
        url = f"redis://volfefe:{user_password}@127.0.0.1:{server.port}/0"
        user = redis.Redis.from_url(url)

        queue = Queue(QUEUE, connection=user, serializer=JSONSerializer)
        ok = queue.enqueue("math.sqrt", 16, job_id="acl-ok", unique=True)
        failing = queue.enqueue("math.sqrt", -1, job_id="acl-fails", retry=Retry(max=1, interval=1))
        scheduler = Scheduler(queue_name=QUEUE, connection=user)
        scheduler.cron("0 * * * *", func="math.sqrt", args=[4], id="acl-cron", queue_name=QUEUE)
        assert "acl-cron" in [job.id for job in scheduler.get_jobs()]

        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [
                    RQ,
                    "worker",
                    QUEUE,
                    "-w",
                    "rq.worker.SimpleWorker",
                    "-S",
                    "rq.serializers.JSONSerializer",
                    "--with-scheduler",
                ],
                env={**os.environ, "RQ_REDIS_URL": url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(
                lambda: (
                    ok.get_status(refresh=True) == JobStatus.FINISHED
                    and failing.get_status(refresh=True) == JobStatus.FAILED
                ),
                JOBS_TIMEOUT,
                what="one job to finish and one to fail after its retry",
            )
            failing.refresh()
            assert failing.retries_left == 0  # retried once (through the scheduler), then failed

            env = web_environment(tmp_path / "var", url, RQ_DASHBOARD_USERNAME="u", RQ_DASHBOARD_PASSWORD="p")
            with WebProcess(env, tmp_path / "web.log") as web:
                auth = basic_auth("u", "p")
                for path in (
                    "/rq/",
                    "/rq/0/data/queues.json",
                    "/rq/0/data/workers.json",
                    f"/rq/0/data/jobs/{QUEUE}/failed/8/asc/1.json",
                ):
                    assert web.get(path, auth).status == 200, path
                assert web.post(f"/rq/queue/{QUEUE}/failed/empty", {**auth, "Origin": web.base}).status == 200
            assert queue.failed_job_registry.count == 0
        finally:
            worker.terminate()
            # A plain RQ 3.0 worker can wait out its pubsub thread's 60 s sleep on the way out (the
            # race jobs.rq_seam.unsubscribe_bounded closes for ours); its shutdown is checked too.
            worker.wait(90)
        log = log_path.read_text()
        assert "NOPERM" not in log and "not supported" not in log, log
        assert "Traceback" not in web.log()

        for command in (
            ["FLUSHALL"],
            ["FLUSHDB"],
            ["CONFIG", "SET", "dir", "/tmp"],
            ["MODULE", "LIST"],
            ["KEYS", "*"],
            ["REPLICAOF", "NO", "ONE"],
            ["SAVE"],
            ["SHUTDOWN", "NOSAVE"],
            ["CLIENT", "KILL", "TYPE", "normal"],
            ["ACL", "LIST"],
            ["SET", "other-app:key", "x"],
            ["GET", "session:admin"],
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                user.execute_command(*command)
        assert admin.ping()
        user.close()
        admin.close()


def test_the_acl_line_names_only_rq_and_project_keys() -> None:
    line = documented_acl_line()
    assert re.findall(r"~(\S+)", line) == ["rq:*", "volfefe:*"]
    assert "-@dangerous" in line and "+@all" not in line and "allkeys" not in line
