"""Honest exits and messages (issue 8, items 4-6).

Errors are recognised by type and name their cause; broken pipes end quietly; ``status`` and
``report`` start and create nothing; ``enqueue.py --wait`` says when no worker listens, stops at
``--timeout``, shows each failure's cause and exits 1 when a job failed; its summary counts only what
this database records; ``volfefe run`` checks the model before it enqueues anything; a model with
random weights is flagged wherever its classifications are counted.

The command lines run as real subprocesses (through real shell pipes for the broken pipes) against a
real redis-server, real ``rq worker`` processes and the tiny model.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, SimpleWorker
from rq.job import Job
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from cli.errors import EXIT_BROKEN_PIPE, explain
from config import settings
from db import queries
from db.migrate import upgrade
from db.models import Classification, Content
from db.session import session_scope
from db.store import record_skip
from errors import VolfefeError
from jobs.progress import failure_cause, summarize
from jobs.queue import SERIALIZER, enqueue_ids
from model.model_marks import RANDOM_WEIGHTS_KEY, RANDOM_WEIGHTS_TAG, has_random_weights
from services.redis_connection import stop_embedded_redis
from services.redis_server import free_port
from tests.processes import WorkerProcess, wait_for
from tests.rows import store_classification

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VOLFEFE = str(BIN / "volfefe")
QUEUE = "ml_classification"
#: settings a test's commands must not inherit from the shell that runs pytest.
PROJECT_VARIABLES = (
    "REDIS_URL",
    "RQ_REDIS_URL",
    "DATABASE_URL",
    "VOLFEFE_DATA_DIR",
    "VOLFEFE_QUEUE",
    "FINBERT_MODEL",
)
RANDOM_WEIGHTS_LINE = re.compile(
    r"^warning: (\d+) classifications were made by a model with random weights \(meaningless labels\)$", re.M
)
SCORES = {"positive": 0.7, "negative": 0.2, "neutral": 0.1}


def command_env(**settings_: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in PROJECT_VARIABLES}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **settings_)
    return env


def run(
    args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 180
) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def add_contents(url: str, texts: list[str], prefix: str = "h") -> list[int]:
    with session_scope(url) as session:
        contents = [
            Content(source="test", external_id=f"{prefix}{i}", text=text) for i, text in enumerate(texts)
        ]
        session.add_all(contents)
        session.flush()
        return [content.id for content in contents]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A VOLFEFE_DATA_DIR of the test's own; an embedded redis-server started in it is stopped afterwards."""
    path = tmp_path / "var"
    yield path
    stop_embedded_redis(path)


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """``config.settings()`` read again from the environment this test sets."""
    for name in PROJECT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    settings.cache_clear()
    yield monkeypatch
    settings.cache_clear()


# -- errors are recognised by type and name their cause ------------------------------------------


def test_every_project_error_is_explained_by_its_type() -> None:
    from cli.run import WorkersDied
    from config import ConfigError
    from db.existence import DatabaseMissing
    from db.identity import DatabaseNotInitialised
    from db.importer import ImportFileError
    from jobs.binding import QueueInUse
    from model.classifier import ModelLoadError
    from model.labels import LabelError
    from services.dashboard import DashboardRefused
    from services.redis_connection import RedisUnavailable
    from services.redis_server import RedisServerError

    class BrandNew(VolfefeError):
        """An error no list in the CLI names."""

    for kind in (
        ConfigError, ImportFileError, RedisUnavailable, RedisServerError, WorkersDied, DashboardRefused,
        ModelLoadError, LabelError, DatabaseMissing, DatabaseNotInitialised, QueueInUse, BrandNew,
    ):  # fmt: skip
        assert issubclass(kind, VolfefeError), kind
        assert explain(kind("the cause, in one line")) == "the cause, in one line"


def test_an_error_is_never_recognised_by_its_name() -> None:
    impostor = type("ModelLoadError", (RuntimeError,), {})
    assert explain(impostor("not ours")) is None  # a bug: it keeps its traceback


def test_a_database_error_names_the_driver_cause_not_a_link(fresh_settings: pytest.MonkeyPatch) -> None:
    url = f"postgresql+psycopg://volfefe:secret-pw@127.0.0.1:{free_port()}/nowhere"
    fresh_settings.setenv("DATABASE_URL", url)
    engine = create_engine(url)
    with pytest.raises(OperationalError) as caught:
        engine.connect()
    engine.dispose()
    assert "sqlalche.me" in str(caught.value)  # what the old message showed

    message = explain(caught.value)

    assert message is not None
    assert message.startswith("cannot use the database at postgresql+psycopg://volfefe:***@127.0.0.1:")
    assert "Connection refused" in message
    assert "secret-pw" not in message and "sqlalche.me" not in message and "\n" not in message


def test_a_redis_error_names_where_redis_is(fresh_settings: pytest.MonkeyPatch) -> None:
    url = f"redis://:secret-pw@127.0.0.1:{free_port()}/0"
    fresh_settings.setenv("REDIS_URL", url)
    client = Redis.from_url(url, socket_connect_timeout=1)
    with pytest.raises(RedisConnectionError) as caught:
        client.ping()

    message = explain(caught.value)

    assert message is not None
    assert message.startswith(f"cannot use Redis at redis://:***@{url.rsplit('@', 1)[1]}: ")
    assert "secret-pw" not in message and "\n" not in message


# -- broken pipes end quietly ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "pipeline",
    [
        # head -n 0 exits before the command writes: its first write meets a closed pipe, every time.
        f"{VOLFEFE} status | head -n 0",
        f"{VOLFEFE} report | head -n 0",
        f"{VOLFEFE} status --json | head -n 0",
        # More than a pipe's buffer (64 KiB) of lines: the writes after head -1 has gone fail.
        f"{sys.executable} enqueue.py --dry-run --all | head -1",
    ],
)
def test_a_closed_pipe_ends_the_command_quietly(pipeline: str, sqlite_url: str, data_dir: Path) -> None:
    upgrade(sqlite_url)
    add_contents(
        sqlite_url, [f"post number {i} about stocks, bonds, rates and the dollar" for i in range(3000)]
    )
    env = command_env(DATABASE_URL=sqlite_url, VOLFEFE_DATA_DIR=str(data_dir))

    result = run(["bash", "-c", f"set -o pipefail; {pipeline}"], env)

    assert result.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert result.returncode == EXIT_BROKEN_PIPE  # pipefail: the command's own status, as if SIGPIPE'd


# -- status and report read only ------------------------------------------------------------------


@pytest.mark.integration
def test_status_and_report_start_nothing_and_create_nothing(tmp_path: Path, data_dir: Path) -> None:
    missing = tmp_path / "never-created.db"
    env = command_env(DATABASE_URL=f"sqlite:///{missing}", VOLFEFE_DATA_DIR=str(data_dir))
    expected = f"database sqlite:///{missing} does not exist: run `volfefe db upgrade`"

    status = run([VOLFEFE, "status"], env)

    assert status.returncode == 1, status
    assert "queue ml_classification: the embedded Redis is not running: no jobs to show" in status.stdout
    assert error_lines(status.stderr) == [f"volfefe: error: {expected}"]

    report = run([VOLFEFE, "report"], env)

    assert report.returncode == 1, report
    assert report.stderr.splitlines() == [f"volfefe: error: {expected}"]
    assert not missing.exists()
    assert not data_dir.exists()  # no embedded redis-server was started (it lives in data_dir/redis)


@pytest.mark.integration
def test_status_shows_the_database_while_the_embedded_redis_is_stopped_then_its_queue(
    sqlite_url: str, data_dir: Path
) -> None:
    upgrade(sqlite_url)
    add_contents(sqlite_url, ["stocks rally", "shares fall"])
    env = command_env(DATABASE_URL=sqlite_url, VOLFEFE_DATA_DIR=str(data_dir))

    stopped = run([VOLFEFE, "status"], env)

    assert stopped.returncode == 0, stopped
    assert (
        stopped.stdout.splitlines()[0]
        == "queue ml_classification: the embedded Redis is not running: no jobs to show"
    )
    assert "contents 2, classified 0, skipped 0, unclassified 2" in stopped.stdout
    assert not data_dir.exists()

    started = run([VOLFEFE, "redis-url"], env)  # what starts it
    assert started.returncode == 0, started
    assert run([sys.executable, "enqueue.py", "--all"], env).returncode == 0
    running = run([VOLFEFE, "status", "--json"], env)

    assert running.returncode == 0, running
    status = json.loads(running.stdout)
    assert status["jobs"]["queued"] == 2
    assert status["database"] == {
        "contents": 2,
        "classified": 0,
        "partly_classified": 0,
        "skipped": 0,
        "unclassified": 2,
    }
    assert status["unclassified_by_model"] == {"finbert": 2}


# -- enqueue.py --wait ------------------------------------------------------------------------------


class Lines:
    """The lines a process writes to one of its pipes, collected by a thread as they come."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def join(self) -> None:
        self._thread.join(10)


def refuse_classifications_of(database_url: str, content_id: int) -> None:
    """A SQLite trigger that makes storing ``content_id``'s classification fail: the post's own failure."""
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    with connection:
        connection.execute(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON classifications "
            f"WHEN NEW.content_id = {int(content_id)} BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )
    connection.close()


@pytest.mark.integration
def test_wait_says_no_worker_keeps_waiting_and_shows_each_failure_cause(
    redis_url: str, sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    doomed, _fine, _empty = add_contents(
        sqlite_url, ["stocks rally on strong earnings", "shares fall", "<p> </p>"]
    )
    refuse_classifications_of(sqlite_url, doomed)
    connection = Redis.from_url(redis_url)
    env = command_env(REDIS_URL=redis_url, DATABASE_URL=sqlite_url)
    process = subprocess.Popen(
        [sys.executable, "enqueue.py", "--all", "--wait"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = Lines(process.stdout), Lines(process.stderr)
    worker = WorkerProcess(redis_url, sqlite_url, tiny_model_dir, tmp_path / "worker.log")
    try:
        wait_for(
            lambda: "no worker is listening on queue ml_classification" in err.text(),
            15,
            what="no-worker line",
        )
        assert process.poll() is None  # still waiting
        # Each job's first failure is its last: the retry policy (tested elsewhere) would add 35 s.
        for job_id in Queue(QUEUE, connection=connection).job_ids:
            connection.hset(Job.key_for(job_id), "retries_left", 0)
        worker.start()
        assert process.wait(120) == 1
    finally:
        if process.poll() is None:
            process.kill()
        worker.stop()
        connection.close()
    out.join()
    err.join()

    summary = out.lines[1]
    assert re.fullmatch(
        r"total 3, classified 1, skipped 1, failed 1 in \d+\.\ds \(\d+\.\d items/s\)", summary
    )
    assert "  skipped no_text_to_classify: 1" in out.lines
    assert f"  failed content {doomed}: refused by the test trigger" in out.lines
    assert "Traceback" not in err.text() and "sqlalche.me" not in out.text() + err.text()


@pytest.mark.integration
def test_wait_stops_at_its_timeout_and_says_how_many_jobs_still_wait(redis_url: str, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    add_contents(sqlite_url, ["stocks rally", "shares fall"])
    env = command_env(REDIS_URL=redis_url, DATABASE_URL=sqlite_url)

    result = run([sys.executable, "enqueue.py", "--all", "--wait", "--timeout", "3"], env)

    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"total 2, classified 0, skipped 0, failed 0, waiting 2 in \d+\.\ds .*", lines[1])
    assert "timed out after 3s: 2 jobs still waiting or running" in lines
    assert "no worker is listening on queue ml_classification" in result.stderr
    assert "Traceback" not in result.stderr


def test_timeout_needs_wait() -> None:
    result = run([sys.executable, "enqueue.py", "--all", "--timeout", "3"], command_env())
    assert result.returncode == 2 and "--timeout goes with --wait" in result.stderr


# -- the summary counts what this database records ------------------------------------------------


def fail_like_an_unreachable_database() -> None:
    """A job body that fails as SQLAlchemy does when PostgreSQL refuses the connection."""
    engine = create_engine(f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x")
    try:
        engine.connect()
    finally:
        engine.dispose()


def claim_classified() -> dict:
    """A job body whose result says "classified" while nothing is stored (another database's result)."""
    return {"status": "classified", "sentiment": "positive"}


def test_failure_cause_is_the_last_exception_line_without_module_path_or_link() -> None:
    sqlalchemy_traceback = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "psycopg.OperationalError: connection failed: Connection refused\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        'Traceback (most recent call last):\n  File "y.py", line 2, in g\n'
        "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: Connection refused\n"
        "(Background on this error at: https://sqlalche.me/e/20/e3q8)\n"
    )
    assert failure_cause(sqlalchemy_traceback) == "OperationalError: connection failed: Connection refused"
    ours = (
        "Traceback (most recent call last):\n  ...\njobs.classify.ClassificationFailed: disk quota exceeded\n"
    )
    assert failure_cause(ours) == "disk quota exceeded"
    assert failure_cause(None) == "failed (no error recorded)"


@pytest.mark.integration
def test_summary_counts_only_what_this_database_records(migrated_db: str, redis_url: str) -> None:
    classified, skipped, failed, claimed, waiting = add_contents(migrated_db, ["a", "b", "c", "d", "e"])
    missing = 999_999
    with session_scope(migrated_db) as session:
        store_classification(session, classified, "positive", 0.9, f"m+{RANDOM_WEIGHTS_TAG}+fp32", SCORES)
        record_skip(session, skipped, "no_text_to_classify")
    connection = Redis.from_url(redis_url)
    report = enqueue_ids(connection, migrated_db, [classified, skipped, failed, claimed, waiting, missing])
    jobs = dict(zip(report.content_ids, report.job_ids, strict=True))
    # Two jobs end on a side queue with bodies of the test's own: one fails, one claims a result that
    # this database does not hold. The others stay queued: no worker runs them.
    side = Queue("honesty-side", connection=connection, serializer=SERIALIZER)
    for content_id, body in ((failed, fail_like_an_unreachable_database), (claimed, claim_classified)):
        Job.fetch(jobs[content_id], connection=connection, serializer=SERIALIZER).delete()
        side.enqueue(body, job_id=jobs[content_id])
    SimpleWorker([side], connection=connection, serializer=SERIALIZER).work(burst=True)

    summary = summarize(connection, migrated_db, report)
    connection.close()

    assert (summary.total, summary.classified, summary.sentiments) == (6, 1, {"positive": 1})
    assert summary.skipped == {"no_text_to_classify": 1, "content_not_found": 1}
    assert summary.failed[failed].startswith("OperationalError: connection failed: ")
    assert "Connection refused" in summary.failed[failed]
    assert summary.failed[claimed] == "job finished, nothing recorded"
    assert summary.waiting == [waiting]
    assert not summary.complete
    lines = "\n".join(summary.lines())
    assert RANDOM_WEIGHTS_LINE.search(lines).group(1) == "1"
    assert "sqlalche.me" not in lines


# -- volfefe run checks the model first, and its exit tells the truth ------------------------------


@pytest.mark.integration
def test_run_enqueues_nothing_when_the_model_cannot_load(
    redis_url: str, tmp_path: Path, data_dir: Path
) -> None:
    env = command_env(
        REDIS_URL=redis_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}",
        VOLFEFE_DATA_DIR=str(data_dir),
        FINBERT_MODEL="nobody/no-such-finbert",
    )

    result = run([VOLFEFE, "run"], env)

    assert result.returncode == 1, result
    (line,) = error_lines(result.stderr)
    assert line.startswith(
        "volfefe: error: cannot load FINBERT_MODEL='nobody/no-such-finbert': "
    )  # before any worker
    assert "converting" not in result.stdout  # nor a conversion announced
    assert ".venv/bin/python -m tools.random_model --tiny models/tiny" in line
    assert "FINBERT_MODEL=models/tiny ./scripts/demo" in line
    assert "Traceback" not in result.stdout + result.stderr
    connection = Redis.from_url(redis_url)
    assert list(connection.scan_iter("rq:job:*")) == []
    assert connection.llen(Queue(QUEUE, connection=connection).key) == 0
    connection.close()


@pytest.mark.integration
def test_run_exits_1_when_a_job_failed_and_flags_random_weights(
    redis_url: str, tmp_path: Path, data_dir: Path, tiny_model_dir: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'run.db'}"
    upgrade(database_url)
    (doomed,) = add_contents(database_url, ["stocks rally"], prefix="doomed")
    refuse_classifications_of(database_url, doomed)
    posts = tmp_path / "posts.csv"
    posts.write_text("external_id,text\np1,Shares fall after weak guidance\np2,Markets surge on rate cut\n")
    env = command_env(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        VOLFEFE_DATA_DIR=str(data_dir),
        FINBERT_MODEL=str(tiny_model_dir),
        FINBERT_PRECISION="fp32",
        TORCH_THREADS="1",
    )

    result = run([VOLFEFE, "run", str(posts)], env, timeout=300)  # the failing job's retries take ~35 s

    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    loaded = next(i for i, line in enumerate(lines) if re.fullmatch(r"model finbert \S+ loaded", line))
    enqueued = next(i for i, line in enumerate(lines) if line.startswith("enqueued "))
    assert loaded < enqueued
    assert RANDOM_WEIGHTS_TAG in lines[loaded]
    assert any(re.fullmatch(r"total 3, classified 2, skipped 0, failed 1 in .*", line) for line in lines)
    assert f"  failed content {doomed}: refused by the test trigger" in lines
    # Once in the run's summary, once in the report after it.
    assert [m.group(1) for m in RANDOM_WEIGHTS_LINE.finditer(result.stdout)] == ["2", "2"]
    assert "Traceback" not in result.stderr


# -- a model with random weights is flagged -------------------------------------------------------


def test_the_random_model_tool_marks_its_models(tiny_model_dir: Path, tiny_classifier) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config[RANDOM_WEIGHTS_KEY] is True
    assert has_random_weights(tiny_classifier.model_version)
    assert tiny_classifier.model_version.endswith(f"+{RANDOM_WEIGHTS_TAG}+fp32")


def test_an_unmarked_model_version_is_not_flagged() -> None:
    assert not has_random_weights("yiyanghkust/finbert-tone@4921590d3c0c+bf16")
    assert not has_random_weights("/models/random-weights+bf16")  # a folder's name is not the mark


def test_report_flags_random_weight_classifications(sqlite_url: str) -> None:
    from cli.report import build_report, render_report

    upgrade(sqlite_url)
    real, random_ = add_contents(sqlite_url, ["a", "b"])
    with session_scope(sqlite_url) as session:
        store_classification(session, real, "positive", 0.9, "yiyanghkust/finbert-tone+bf16", SCORES)
    assert RANDOM_WEIGHTS_LINE.search(render_report(build_report(sqlite_url))) is None
    with session_scope(sqlite_url) as session:
        store_classification(
            session, random_, "neutral", 0.5, f"models/tiny+{RANDOM_WEIGHTS_TAG}+bf16", SCORES
        )

    report = build_report(sqlite_url)

    assert report["random_weight_classifications"] == 1
    assert RANDOM_WEIGHTS_LINE.search(render_report(report)).group(1) == "1"


@pytest.mark.integration
def test_classify_marks_the_lines_of_a_random_model(tiny_model_dir: Path) -> None:
    result = run(
        [VOLFEFE, "classify"], command_env(FINBERT_MODEL=str(tiny_model_dir)), stdin="Stocks rally\n"
    )

    assert result.returncode == 0, result
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["warning"] == "model with random weights: meaningless labels"


@pytest.mark.integration
def test_run_builds_the_openvino_conversion_before_its_workers(
    redis_url: str, tmp_path: Path, data_dir: Path, tiny_model_dir: Path
) -> None:
    """With FINBERT_ENGINE=openvino the demo converts first (workers never do), then classifies all."""
    database_url = f"sqlite:///{tmp_path / 'run.db'}"
    env = command_env(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        VOLFEFE_DATA_DIR=str(data_dir),
        FINBERT_MODEL=str(tiny_model_dir),
        FINBERT_ENGINE="openvino",
        FINBERT_PRECISION="fp32",
        VOLFEFE_ENGINE_CACHE=str(tmp_path / "engines"),
    )

    result = run([VOLFEFE, "run"], env, timeout=300)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "converting the model for openvino fp32" in result.stdout
    assert list((tmp_path / "engines").glob("*/model.xml"))
    with session_scope(database_url) as session:
        versions = {row.model_version for row in session.query(Classification)}
        unclassified = len(queries.unclassified_ids(session))
    assert versions and all(version.endswith("+openvino-fp32") for version in versions)
    assert unclassified == 0
