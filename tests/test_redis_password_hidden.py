"""A Redis password never shows: not in ``ps``, not in any log, through a run and a Redis restart.

A real password-protected redis-server; the real ``volfefe web`` process, a real ``rq worker``
(SimpleWorker, JSON jobs) and a real ``FinbertWorker`` with the tiny model all get the URL, password
included, through the environment (``REDIS_URL``, ``RQ_REDIS_URL``). ``ps -eo args`` is sampled
while they work, while Redis is down and after it is back.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from db.migrate import upgrade
from services.redis_server import RedisServer
from tests.processes import READY_LINE, READY_TIMEOUT, wait_for
from tests.web_process import WebProcess, basic_auth, web_environment

pytestmark = pytest.mark.integration

RQ = str(Path(sys.executable).with_name("rq"))
USER = "operator"
PASSWORD = "web-" + secrets.token_hex(8)
AUTH = basic_auth(USER, PASSWORD)
QUEUE = "password-hidden-test"
#: seconds for the little jobs of this test to end.
JOBS_TIMEOUT = 60.0


def ps_args() -> str:
    """Every process's command line, unabridged (-ww: without it ps cuts lines at 80 columns)."""
    return subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout


class Process:
    """A background process whose output goes to a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def test_the_redis_password_never_shows_in_ps_or_logs(tmp_path: Path, tiny_model_dir: Path) -> None:
    secret = "redis-" + secrets.token_hex(12)
    server = RedisServer(tmp_path / "redis", password=secret, appendonly=True)
    server.start()
    url = server.url
    assert secret in url
    database_url = f"sqlite:///{tmp_path / 'volfefe.db'}"
    upgrade(database_url)
    worker_env = {
        **os.environ,
        "RQ_REDIS_URL": url,
        "DATABASE_URL": database_url,
        "FINBERT_MODEL": str(tiny_model_dir),
        "FINBERT_PRECISION": "fp32",
        "TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    worker_env.pop("REDIS_URL", None)
    web = WebProcess(
        web_environment(tmp_path / "var", url, RQ_DASHBOARD_USERNAME=USER, RQ_DASHBOARD_PASSWORD=PASSWORD),
        tmp_path / "web.log",
    )
    processes: list[Process] = []
    samples: list[str] = []
    client = redis.Redis.from_url(url)
    try:
        web.start()
        simple = Process(
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
            worker_env,
            tmp_path / "simple-worker.log",
        )
        finbert = Process(
            [RQ, "worker", "ml_classification", "-w", "workers.FinbertWorker", "--with-scheduler"],
            worker_env,
            tmp_path / "finbert-worker.log",
        )
        processes += [simple, finbert]
        wait_for(
            lambda: READY_LINE in finbert.log() or finbert.popen.poll() is not None,
            READY_TIMEOUT,
            what="the FinbertWorker to load its model",
        )
        assert finbert.popen.poll() is None, finbert.log()[-3000:]
        # The secret reaches the workers through their environment, which only their owner can read.
        assert secret in Path(f"/proc/{simple.popen.pid}/environ").read_text(errors="replace")
        samples.append(ps_args())

        queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
        jobs = [queue.enqueue("math.sqrt", 16), queue.enqueue("math.sqrt", -1)]

        def ended() -> bool:
            return all(job.get_status(refresh=True) in {JobStatus.FINISHED, JobStatus.FAILED} for job in jobs)

        wait_for(ended, JOBS_TIMEOUT, what="the jobs to end")
        assert [job.get_status(refresh=True) for job in jobs] == [JobStatus.FINISHED, JobStatus.FAILED]
        for path in (
            "/rq/",
            "/rq/0/data/queues.json",
            "/rq/0/data/workers.json",
            f"/rq/0/data/jobs/{QUEUE}/failed/8/asc/1.json",
        ):
            assert web.get(path, AUTH).status == 200, path
        assert web.post(f"/rq/queue/{QUEUE}/failed/empty", {**AUTH, "Origin": web.base}).status == 200
        page = web.get("/rq/", AUTH).body  # the dashboard shows which Redis it reads, masked
        assert secret not in page and f"redis://:***@127.0.0.1:{server.port}/0" in page
        samples.append(ps_args())

        server.stop()  # an outage: every process meets connection errors, the usual place for a URL to leak
        assert web.get("/rq/0/data/queues.json", AUTH).status == 503
        time.sleep(3)
        samples.append(ps_args())
        server.start()
        assert web.get("/rq/0/data/queues.json", AUTH).status == 200
        after = queue.enqueue("math.sqrt", 25)
        wait_for(
            lambda: after.get_status(refresh=True) == JobStatus.FINISHED,
            JOBS_TIMEOUT,
            what="a job after the restart",
        )
        samples.append(ps_args())
        assert web.running and all(process.popen.poll() is None for process in processes)
    finally:
        client.close()
        web.stop()
        for process in processes:
            process.stop()
        server.stop()

    shown = "\n".join(samples)
    assert "volfefe web" in shown and f"rq worker {QUEUE}" in shown and "workers.FinbertWorker" in shown
    assert secret not in shown
    logs = {
        "web": web.log(),
        **{process.log_path.name: process.log() for process in processes},
        "redis-server": server.log_file.read_text(errors="replace"),
    }
    for name, text in logs.items():
        assert secret not in text, name
    assert "redis://:***@127.0.0.1:" in logs["web"]  # the web log names Redis, masked
    assert "Redis is unavailable at" in logs["web"] and "Redis is back at" in logs["web"]
