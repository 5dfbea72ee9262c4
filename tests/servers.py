"""Test helper: a private, throw-away PostgreSQL server (initdb + pg_ctl) on 127.0.0.1.

When running as root, initdb and the server run as the ``postgres`` user through ``runuser``
(PostgreSQL refuses to run as root), so the data directory and every folder above it must be
reachable by that user. No pytest fixtures live here: see ``tests/conftest.py``.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from services.redis_server import free_port

#: Interface the server listens on (IPv4 loopback address).
HOST = "127.0.0.1"
#: Superuser role created by initdb and used for every connection (role name).
SUPERUSER = "postgres"
#: OS account that runs initdb and the server when the tests run as root (user name).
OS_USER = "postgres"
#: How long pg_ctl waits for the server to start or stop (seconds).
DEFAULT_TIMEOUT = 60
#: Connection limit of the server; parallel workers and pools in tests need headroom (connections).
MAX_CONNECTIONS = 200
#: Server log file inside the data directory (file name).
LOG_FILE_NAME = "postgres.log"
#: How much of the log is quoted in errors (lines).
LOG_TAIL_LINES = 30
#: Where Debian keeps versioned PostgreSQL binaries when they are not on PATH (glob pattern).
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresServerError(RuntimeError):
    """PostgreSQL binaries are missing, or initdb / the server failed."""


def find_pg_bin_dir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: PATH first, else the newest Debian version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = [Path(p) for p in glob.glob(DEBIAN_BIN_GLOB) if (Path(p) / "initdb").is_file()]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    if candidates:
        return max(candidates, key=version)
    raise PostgresServerError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or in "
        f"{DEBIAN_BIN_GLOB}: install them with `apt-get install postgresql`"
    )


def _is_root() -> bool:
    return os.geteuid() == 0


class PostgresServer:
    """A private PostgreSQL cluster in ``data_dir`` (created by initdb on first start).

    ``data_dir`` must not exist or be empty before the first start. ``port=None`` picks a free
    port at the first ``start()``; ``restart()`` keeps it. Authentication is ``trust``.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self._bin_dir: Path | None = None

    # -- properties -------------------------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        """The server log written by pg_ctl."""
        return self.data_dir / LOG_FILE_NAME

    @property
    def initialized(self) -> bool:
        """True once initdb has created the cluster."""
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def running(self) -> bool:
        """True while a server owns the data directory (``pg_ctl status`` says so)."""
        if not (self.data_dir / "postmaster.pid").is_file():
            return False
        return self._run(["pg_ctl", "-D", str(self.data_dir), "status"], check=False).returncode == 0

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of ``dbname`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self._require_port()}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string of ``dbname`` for psycopg."""
        return f"host={HOST} port={self._require_port()} user={SUPERUSER} dbname={dbname}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: int = DEFAULT_TIMEOUT) -> None:
        """Run initdb if needed, then start the server and wait until it accepts connections."""
        if self.port is None:
            self.port = free_port()
        self._prepare_dir()
        if not self.initialized:
            self._run(
                [
                    "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", SUPERUSER,
                    "--no-sync", "-E", "UTF8", "--locale=C",
                ],
            )  # fmt: skip
        options = " ".join(
            [
                f"-c listen_addresses={HOST}",
                f"-p {self.port}",
                "-c fsync=off",
                f"-c unix_socket_directories={shlex.quote(str(self.data_dir))}",
                f"-c max_connections={MAX_CONNECTIONS}",
            ]
        )
        result = self._run(
            [
                "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                "-w", "-t", str(timeout), "start",
            ],
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            self.stop()
            raise PostgresServerError(
                f"pg_ctl start failed (exit {result.returncode}) on port {self.port}: "
                f"{result.stdout.strip()}\nlog tail:\n{self._log_tail()}"
            )

    def stop(self, timeout: int = DEFAULT_TIMEOUT) -> None:
        """Stop the server (fast shutdown, then immediate if that fails); no-op when not running."""
        if not (self.data_dir / "postmaster.pid").is_file():
            return
        for mode in ("fast", "immediate"):
            result = self._run(
                ["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(timeout), "stop"],
                check=False,
            )
            if result.returncode == 0 or not (self.data_dir / "postmaster.pid").is_file():
                return
        raise PostgresServerError(f"pg_ctl stop failed: {result.stdout.strip()}")

    def restart(self, timeout: int = DEFAULT_TIMEOUT) -> None:
        """Stop, then start again on the same port with the same data directory."""
        self.stop(timeout)
        self.start(timeout)

    # -- databases --------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, ending its sessions first."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def terminate_connections(self, dbname: str) -> int:
        """Terminate every other session connected to ``dbname``; return how many were ended."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        return sum(1 for (ended,) in rows if ended)

    # -- helpers ----------------------------------------------------------------------------------

    def _require_port(self) -> int:
        if self.port is None:
            raise PostgresServerError("PostgresServer has no port yet: call start() first")
        return self.port

    def _prepare_dir(self) -> None:
        """Create the data directory (mode 0700); as root, hand it to the postgres user."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(self.data_dir, user=OS_USER, group=None)
            check = subprocess.run(
                ["runuser", "-u", OS_USER, "--", "test", "-w", str(self.data_dir)],
                check=False,
            )
            if check.returncode != 0:
                raise PostgresServerError(
                    f"user {OS_USER!r} cannot reach {self.data_dir}: every parent folder must be "
                    "searchable by it (pytest's tmp_path is not, it is mode 0700 and owned by root)"
                )

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program (as the postgres user when root); raise on failure if ``check``."""
        if self._bin_dir is None:
            self._bin_dir = find_pg_bin_dir()
        cmd = [str(self._bin_dir / args[0]), *args[1:]]
        if _is_root():
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.data_dir if self.data_dir.is_dir() else "/",
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise PostgresServerError(
                f"{args[0]} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout.strip()}"
            )
        return result

    def _log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    # -- context manager --------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
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
        return f"PostgresServer(port={self.port}, data_dir={str(self.data_dir)!r})"
