"""Real worker processes for integration and fault tests: ``rq worker -w workers.FinbertWorker``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jobs.queue import QUEUE_NAME

RQ = str(Path(sys.executable).with_name("rq"))
#: seconds a worker may take to import torch and load the tiny model.
READY_TIMEOUT = 60.0
READY_LINE = "Worker: model"


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """One ``rq worker`` process with the project's worker class, logging to ``log_path``."""

    def __init__(
        self,
        redis_url: str,
        database_url: str,
        model_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        worker_class: str = "workers.FinbertWorker",
        queue_name: str | None = None,
    ) -> None:
        """``queue_name``: the queue to listen on; default ``VOLFEFE_QUEUE`` from ``env``, else the
        default queue (a FinbertWorker refuses to start on a queue other than its database's)."""
        self.log_path = log_path
        self.queue_name = queue_name or (env or {}).get("VOLFEFE_QUEUE") or QUEUE_NAME
        self.command = [
            RQ,
            "worker",
            self.queue_name,
            "-w",
            worker_class,
            "--with-scheduler",
            "--url",
            redis_url,
        ]
        self.command += args or []
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "FINBERT_MODEL": str(model_dir),
            "FINBERT_PRECISION": "fp32",
            "TORCH_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if wait_ready:
            wait_for(
                lambda: READY_LINE in self.log() or not self.running,
                READY_TIMEOUT,
                what=f"worker {self.pid} to load its model",
            )
            if not self.running:
                raise AssertionError(f"worker exited while starting:\n{self.log()[-3000:]}")
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        if self.running and self.process is not None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever, leaving its jobs started (a crash)."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.process is None:
            return None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
