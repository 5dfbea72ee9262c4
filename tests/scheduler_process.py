"""A real ``python scheduler.py`` process for the scheduler's tests, logging to a file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import wait_for

PROJECT = Path(__file__).resolve().parent.parent
#: the line the scheduler logs after its first pass that reached Redis.
RUNNING_LINE = "scheduler running on queue"
#: seconds the scheduler may take to start and finish its first pass.
START_TIMEOUT = 30.0
#: the line the scheduler logs each time it moves the hourly sweep onto the queue.
SWEEP_MOVED_LINE = "moved scheduled job 'hourly-sweep'"


def hours_struck(since: float, until: float) -> int:
    """How many tops of the hour (UTC) passed between two ``time.time()`` readings.

    The scheduler runs on the real clock: a test that forces the sweep due can also meet the real
    hour, which moves the sweep once more, rightly.
    """
    return int(until // 3600) - int(since // 3600)


class SchedulerProcess:
    """``python scheduler.py ARGS`` on ``redis_url``; ``stop()`` or the context manager ends it."""

    def __init__(self, redis_url: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self.command = [sys.executable, "scheduler.py", *args]
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DATABASE_URL": "sqlite:///unused.db",
            "PYTHONUNBUFFERED": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait_running: bool = True) -> SchedulerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=PROJECT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait_running:
            wait_for(
                lambda: RUNNING_LINE in self.log() or not self.running,
                START_TIMEOUT,
                what=f"scheduler {self.pid} to run its first pass",
            )
            assert self.running, f"scheduler exited while starting:\n{self.log()}"
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self, pattern: str) -> list[str]:
        """Log lines matching the regular expression ``pattern``."""
        return [line for line in self.log().splitlines() if re.search(pattern, line)]

    def terminate(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it had to be killed after ``timeout``) and seconds to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.running and self.process is not None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> SchedulerProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
