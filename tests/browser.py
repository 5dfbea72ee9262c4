"""Test helper: headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

No driver or websocket library is needed: Chromium reads commands on its file descriptor 3 and
writes answers and events on 4, each a JSON message ended by a NUL byte. Returns None from
``find_chromium`` when no binary is installed (Debian package: ``chromium``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

#: binaries tried in order (Debian's package installs ``chromium``).
BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: seconds a command may take before the test gives up on the browser.
COMMAND_TIMEOUT = 30.0

Handler = Callable[["Chromium", dict[str, Any]], None]


def find_chromium() -> str | None:
    """The path of a Chromium binary on PATH, or None."""
    for name in BINARIES:
        if path := shutil.which(name):
            return path
    return None


class Chromium:
    """One headless Chromium process; ``send`` a command, ``on`` an event, ``wait_for_event``."""

    def __init__(self, binary: str, profile_dir: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def _wire_pipes() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes answers
            high_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(answers_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile_dir}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=_wire_pipes,
            start_new_session=True,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._next_id = 0
        self._lock = threading.Lock()
        self._closed = False
        self._pending: dict[int, dict[str, Any]] = {}
        self._answered = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self._handlers: dict[str, Handler] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- protocol ---------------------------------------------------------------------------------

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send a command and wait for its result; AssertionError on a protocol error or timeout."""
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
            if session:
                message["sessionId"] = session
            os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        with self._answered:
            while message_id not in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"Chromium did not answer {method}")
                self._answered.wait(remaining)
            answer = self._pending.pop(message_id)
        if "error" in answer:
            raise AssertionError(f"{method} failed: {answer['error']}")
        return dict(answer.get("result", {}))

    def post(self, method: str, params: dict[str, Any], session: str | None = None) -> None:
        """Send a command without waiting for its result (for use inside event handlers); nothing once
        the browser is closing (an event read meanwhile has no one left to answer)."""
        with self._lock:
            if self._closed:
                return
            self._next_id += 1
            message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            os.write(self._commands, json.dumps(message).encode() + b"\0")

    def on(self, method: str, handler: Handler) -> None:
        """Call ``handler(browser, event)`` for each event ``method`` (in the reader thread)."""
        self._handlers[method] = handler

    def mark(self) -> int:
        """A position in the stream of events, for ``wait_for_event(since=...)``."""
        with self._answered:
            return len(self.events)

    def wait_for_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0
    ) -> dict[str, Any]:
        """The first event from position ``since`` on (seen so far or to come) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        with self._answered:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no such event within {timeout:g} s; saw {[e['method'] for e in self.events]}"
                    )
                self._answered.wait(remaining)

    def new_page(self) -> str:
        """Open a blank tab and return its session id (flat mode)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        return str(self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"])

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._answers, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._answered:
                    self._answered.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._answered:
                        self._pending[message["id"]] = message
                        self._answered.notify_all()
                    continue
                handler = self._handlers.get(message.get("method", ""))
                if handler is not None:
                    handler(self, message)
                with self._answered:
                    self.events.append(message)
                    self._answered.notify_all()

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        # Under the lock: the reader thread's handlers post answers, and a descriptor closed under them
        # raised EBADF in that thread (or, its number reused meanwhile, wrote into another file).
        with self._lock, contextlib.suppress(OSError):
            self._closed = True
            os.close(self._commands)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        with contextlib.suppress(OSError):
            os.close(self._answers)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
