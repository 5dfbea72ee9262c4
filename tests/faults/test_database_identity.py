"""Scenario 8: several databases, one Redis. Jobs carry their database's identity; a queue serves one
database at a time.

8a  The main job (``volfefe run``) against a SQLite database, then against a new database at the same
    URL (the file deleted, migrated again) within the result TTL: everything of the new database is
    enqueued and classified, the summary and the report count its truth, the old finished jobs
    never count.
8b  Two live databases on one Redis: the second one's first command (``enqueue.py``, a worker start)
    is refused with exit 1 and one line naming the other database and VOLFEFE_QUEUE; with
    VOLFEFE_QUEUE set, both classify their own posts side by side (same content ids, other texts).
8c  A job of database B pushed by hand onto database A's queue (among A's own), and a job of another
    function under one of A's ids: refused unrun, A's rows untouched, kept in the failed registry,
    and enqueued again at once by the next sweep of its database (cool-down 0).
8d  A failed job's cool-down is its own database's: the other database's same content id is enqueued
    and classified at once; its own sweep holds it back, then enqueues it again once the cool-down
    has passed.

Every scenario counts lost, doubled and mis-attributed contents (a classification row that is not
what its own database's job reported): 0 expected.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from rq import Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

import config
import jobs.queue
from db.identity import database_id
from db.models import Classification
from db.session import describe, engine_for, session_scope
from jobs.binding import binding_of
from jobs.queue import (
    JOB_FUNCTION,
    POST_FAILURE_COOL_DOWN,
    QUEUE_NAME,
    RESULT_TTL,
    classification_queue,
    failure_cool_down,
    job_id_for,
)
from jobs.sweep import sweep
from tests.faults.accounting import account, misattributed
from tests.faults.conftest import FaultRun, post_texts
from tests.processes import READY_LINE, WorkerProcess, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: the second database's own queue (VOLFEFE_QUEUE).
SECOND_QUEUE = "ml_classification_b"
#: seconds for a command (``volfefe run`` loads the model in its worker).
COMMAND_TIMEOUT = 300


def run_env(run_or_url: FaultRun | str, redis_url: str, **extra: str) -> dict[str, str]:
    database_url = run_or_url if isinstance(run_or_url, str) else run_or_url.database_url
    env = {key: value for key, value in os.environ.items() if key != "VOLFEFE_QUEUE"}
    return {**env, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1", **extra}


def command(
    args: list[str], env: dict[str, str], timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def job_keys_of(connection: Redis, identity: str) -> list[str]:
    return [key.decode() for key in connection.scan_iter(f"rq:job:classify-content-*-{identity}")]


def one_error_line(process: subprocess.CompletedProcess, prefix: str) -> str:
    assert "Traceback" not in process.stdout + process.stderr, process
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


@contextlib.contextmanager
def queue_setting(monkeypatch: pytest.MonkeyPatch, queue_name: str):
    """This process's settings with VOLFEFE_QUEUE=``queue_name`` (what the sweep's enqueue uses)."""
    with monkeypatch.context() as patch:
        patch.setenv("VOLFEFE_QUEUE", queue_name)
        config.settings.cache_clear()
        try:
            yield
        finally:
            config.settings.cache_clear()
    config.settings.cache_clear()


def assert_names_the_other_database(line: str, other: FaultRun) -> None:
    assert describe(other.database_url) in line and other.ident in line, line
    assert "VOLFEFE_QUEUE" in line, line


# -- 8a: a reset database -------------------------------------------------------------------------


def write_posts(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"external_id": f"e{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    return path


def volfefe_run(posts: Path, database_url: str, redis_url: str, tmp_path: Path, model_dir: Path):
    env = run_env(
        database_url,
        redis_url,
        VOLFEFE_DATA_DIR=str(tmp_path / "var"),
        FINBERT_MODEL=str(model_dir),
        FINBERT_PRECISION="fp32",
        TORCH_THREADS="1",
    )
    return command([str(BIN / "volfefe"), "run", str(posts), "--workers", "1"], env)


def classification_count(url: str) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(Classification)) or 0


def test_a_reset_database_is_classified_in_full_and_counted_alone(
    redis_url: str, tmp_path: Path, tiny_model_dir: Path, record_metrics
) -> None:
    database = tmp_path / "volfefe.db"
    url = f"sqlite:///{database}"
    connection = Redis.from_url(redis_url)
    try:
        first = volfefe_run(
            write_posts(tmp_path / "a.jsonl", post_texts(5, seed=81)),
            url,
            redis_url,
            tmp_path,
            tiny_model_dir,
        )
        assert first.returncode == 0, first.stdout + first.stderr
        old = database_id(url)
        engine_for(url).dispose()
        old_jobs = job_keys_of(connection, old)
        assert len(old_jobs) == 5
        assert "total 5, classified 5, skipped 0, failed 0" in first.stdout, first.stdout

        # The database is reset: deleted and made again at the same URL, at once (within RESULT_TTL).
        for leftover in tmp_path.glob("volfefe.db*"):
            leftover.unlink()
        second = volfefe_run(
            write_posts(tmp_path / "b.jsonl", post_texts(7, seed=82)),
            url,
            redis_url,
            tmp_path,
            tiny_model_dir,
        )
        new = database_id(url)
        result = account(url, redis_url)
        wrong = misattributed(url, redis_url)
        classified = classification_count(url)
        old_still_there = [key for key in old_jobs if 0 < connection.ttl(key) <= RESULT_TTL]
    finally:
        engine_for(url).dispose()
        connection.close()

    record_metrics(
        "8a reset database (same URL, within the result TTL)",
        contents=7,
        faults="`volfefe run` on a SQLite file (5 posts), file deleted and migrated again, `volfefe run` "
        "(7 posts, the same content ids 1-5 and two more) while the old 5 finished jobs were still in Redis",
        old_jobs_in_redis=len(old_still_there),
        classified=classified,
        exit_code=second.returncode,
        lost=len(result.lost),
        doubled=len(result.doubled),
        misattributed=len(wrong),
    )
    assert new != old
    assert len(old_still_there) == 5, (
        "the old database's finished jobs must still exist for the test to count"
    )
    assert second.returncode == 0, second.stdout + second.stderr
    output = second.stdout
    assert "enqueued 7, already waiting or running 0, finished in the last 10 min 0" in output, output
    assert "total 7, classified 7, skipped 0, failed 0" in output, output
    assert "contents 7: classified 7, skipped 0, unclassified 0" in output, output
    assert classified == 7
    assert result.lost == [] and result.doubled == [] and result.stranded == [], result
    assert wrong == []


# -- 8b: two live databases on one Redis ----------------------------------------------------------


def test_a_second_live_database_is_refused_in_one_line_then_works_on_its_own_queue(
    fault_run: FaultRun, make_fault_run: Callable[..., FaultRun], record_metrics
) -> None:
    first = fault_run
    second = make_fault_run("second")
    count = 200
    first_ids = first.add_contents(post_texts(count, seed=83))
    second_ids = second.add_contents(post_texts(count, seed=84))
    assert first_ids == second_ids  # the same content ids, other texts: the case a mix-up would hide in
    first.start_worker()
    first.enqueue(first_ids)
    connection = first.redis()
    try:
        # The second database's first commands, while the first one works (jobs waiting, a live worker).
        refused_enqueue = command([sys.executable, "enqueue.py", "--all"], run_env(second, second.redis_url))
        refused_worker = second.start_worker(wait_ready=False)
        wait_for(lambda: not refused_worker.running, 120, what="the second database's worker to be refused")
        second_jobs_after_refusals = job_keys_of(connection, second.ident)
        binding = binding_of(connection, QUEUE_NAME)

        # Its own queue: both work side by side.
        second.queue_name = SECOND_QUEUE
        second.start_worker()
        own_queue = command(
            [sys.executable, "enqueue.py", "--all"],
            run_env(second, second.redis_url, VOLFEFE_QUEUE=SECOND_QUEUE),
        )
        first.wait_settled(count, 180, "the first database's posts")
        second.wait_settled(count, 180, "the second database's posts")
        queued_on = {
            name: {
                job_id.rsplit("-", 1)[-1]
                for job_id in classification_queue(connection, name).finished_job_registry.get_job_ids(
                    cleanup=False
                )
            }
            for name in (QUEUE_NAME, SECOND_QUEUE)
        }
    finally:
        connection.close()
    first_result, second_result = first.account(), second.account()
    wrong = misattributed(first.database_url, first.redis_url) + misattributed(
        second.database_url, second.redis_url
    )
    refused_log = refused_worker.log()
    record_metrics(
        "8b two live databases, one Redis",
        contents=2 * count,
        faults="a second PostgreSQL database's `enqueue.py --all` and `rq worker` while the first one's "
        f"worker classifies; then the second on VOLFEFE_QUEUE={SECOND_QUEUE}, both at once, same content ids",
        refused_enqueue_exit=refused_enqueue.returncode,
        refused_worker_exit=refused_worker.process.returncode if refused_worker.process else None,
        lost=len(first_result.lost) + len(second_result.lost),
        doubled=len(first_result.doubled) + len(second_result.doubled),
        misattributed=len(wrong),
    )
    # Refused at its first command, in one line that names the first database and says what to do.
    assert refused_enqueue.returncode == 1, refused_enqueue
    line = one_error_line(refused_enqueue, "enqueue.py: error: ")
    assert_names_the_other_database(line, first)
    assert refused_worker.process is not None and refused_worker.process.returncode == 1, refused_log
    assert "Traceback" not in refused_log and READY_LINE not in refused_log, refused_log
    (worker_line,) = [text for text in refused_log.splitlines() if "VOLFEFE_QUEUE" in text]
    assert_names_the_other_database(worker_line, first)
    assert second_jobs_after_refusals == [] and binding is not None and binding.database_id == first.ident
    # Then, on its own queue, everything of both.
    assert own_queue.returncode == 0, own_queue
    assert own_queue.stdout.startswith(f"enqueued {count},"), own_queue.stdout
    assert queued_on == {QUEUE_NAME: {first.ident}, SECOND_QUEUE: {second.ident}}
    for result in (first_result, second_result):
        assert result.lost == [] and result.doubled == [] and result.stranded == [], result
        assert result.classified == count and not result.failed, result
    assert wrong == []


# -- 8c: a job of another database on this database's queue ---------------------------------------


def test_a_job_of_another_database_is_refused_unrun_and_not_lost(
    fault_run: FaultRun, make_fault_run: Callable[..., FaultRun], record_metrics, monkeypatch
) -> None:
    here = fault_run
    there = make_fault_run("there", queue_name=SECOND_QUEUE)
    count = 64
    ids = here.add_contents(post_texts(count, seed=85))
    assert there.add_contents(post_texts(count, seed=86)) == ids == list(range(1, count + 1))
    foreign_ids = ids[::8]  # 8 of them, spread over the batch
    squatted = ids[-1]
    connection = here.redis()
    queue = classification_queue(connection)
    try:
        # Pushed by hand, with the policy of enqueue_ids, among this database's own jobs (one after every
        # 8 of them, so that batches mix both); and a job of another function under this database's id
        # for the last content.
        for content_id in foreign_ids:
            here.enqueue(ids[content_id - 1 : content_id + 7][: count - content_id])
            queue.enqueue(
                JOB_FUNCTION,
                content_id,
                there.ident,
                job_id=job_id_for(content_id, there.ident),
                retry=Retry(max=2, interval=[5, 30]),
            )
        queue.enqueue("math.sqrt", 4, job_id=job_id_for(squatted, here.ident))
        here.start_worker()
        foreign_job_ids = [job_id_for(content_id, there.ident) for content_id in foreign_ids]
        here.wait(
            lambda: all(
                (status := connection.hget(Job.key_for(job_id), "status")) and status.decode() == "failed"
                for job_id in [*foreign_job_ids, job_id_for(squatted, here.ident)]
            ),
            120,
            "the foreign and the squatting jobs to fail",
        )
        here.wait_settled(count - 1, 120, "this database's own jobs")
        foreign = Job.fetch_many(foreign_job_ids, connection, serializer=JSONSerializer)
        ends = {(job.get_status(), job.return_value()) for job in foreign}
        reasons = {job.id: job.latest_result().exc_string for job in foreign}
        cool_downs = {failure_cool_down(job) for job in foreign}
        squatter = Job.fetch(job_id_for(squatted, here.ident), connection, serializer=JSONSerializer)
        squatter_end = (
            squatter.get_status(),
            failure_cool_down(squatter),
            squatter.latest_result().exc_string,
        )
        in_failed_registry = set(queue.failed_job_registry.get_job_ids(cleanup=False))
        rows_there_before = classification_count(there.database_url)

        # Not lost: each database's next sweep enqueues its content again at once.
        here_sweep = sweep(connection, here.database_url)
        there.start_worker()
        with queue_setting(monkeypatch, SECOND_QUEUE):
            there_sweep = sweep(connection, there.database_url)
        here.wait_settled(count, 120, "the squatted content")
        there.wait_settled(count, 120, "the other database's contents")
    finally:
        connection.close()
    here_result, there_result = here.account(), there.account()
    wrong = misattributed(here.database_url, here.redis_url) + misattributed(
        there.database_url, there.redis_url
    )
    record_metrics(
        "8c job of another database on this queue",
        contents=2 * count,
        faults=f"{len(foreign_ids)} jobs of database B pushed by hand onto database A's queue among A's "
        f"{count - 1} own jobs (same content ids), and one job of another function under one of A's ids",
        refused=sum(reason.splitlines()[-1].startswith("refused: ") for reason in reasons.values()),
        retried_at_once=len(there_sweep.retried_after_failure) + len(here_sweep.retried_after_failure),
        lost=len(here_result.lost) + len(there_result.lost),
        doubled=len(here_result.doubled) + len(there_result.doubled),
        misattributed=len(wrong),
    )
    assert ends == {(JobStatus.FAILED, None)}
    for reason in reasons.values():
        last = reason.strip().splitlines()[-1]
        assert last == f"refused: enqueued for database {there.ident}, this worker's database is {here.ident}"
    assert cool_downs == {0}
    assert squatter_end[:2] == (JobStatus.FAILED, 0)
    assert "is not a job of this project" in squatter_end[2]
    assert {*foreign_job_ids, squatter.id} <= in_failed_registry  # kept, not lost
    assert rows_there_before == 0
    # This database's rows are its own jobs' (none written by a foreign job), and so are the other's.
    assert wrong == []
    assert here_sweep.enqueued == here_sweep.retried_after_failure == [squatted]
    assert there_sweep.retried_after_failure == foreign_ids
    assert sorted(there_sweep.enqueued) == ids
    for result in (here_result, there_result):
        assert result.lost == [] and result.doubled == [] and result.stranded == [], result
        assert result.classified == count and not result.failed, result


# -- 8d: cool-downs are per database --------------------------------------------------------------


@contextlib.contextmanager
def failing_store(run: FaultRun, content_id: int):
    """Every INSERT of ``content_id``'s classification raises: a failure of the post itself."""
    with psycopg.connect(run.postgres.conninfo(run.dbname), autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE FUNCTION refuse_store() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.content_id = {int(content_id)} THEN
                    RAISE EXCEPTION 'refusing to store content %', NEW.content_id;
                END IF;
                RETURN NEW;
            END $$
            """
        )
        conn.execute(
            "CREATE TRIGGER refuse_store BEFORE INSERT ON classifications "
            "FOR EACH ROW EXECUTE FUNCTION refuse_store()"
        )
    try:
        yield
    finally:
        with psycopg.connect(run.postgres.conninfo(run.dbname), autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_store ON classifications")


def test_a_failed_jobs_cool_down_is_its_own_databases_and_ends(
    fault_run: FaultRun, make_fault_run: Callable[..., FaultRun], record_metrics, monkeypatch
) -> None:
    here = fault_run
    there = make_fault_run("there", queue_name=SECOND_QUEUE)
    count = 20
    ids = here.add_contents(post_texts(count, seed=87))
    assert there.add_contents(post_texts(count, seed=88)) == ids
    broken = ids[3]
    connection = here.redis()
    queue = classification_queue(connection)
    try:
        here.start_worker()
        with failing_store(here, broken):
            report = here.enqueue(ids)
            # Its retries (5 s, then 30 s) are the product's: the job ends failed about 40 s later.
            here.wait(
                lambda: (
                    (status := connection.hget(Job.key_for(job_id_for(broken, here.ident)), "status"))
                    is not None
                    and status.decode() == "failed"
                ),
                150,
                "the broken content's job to fail for good",
            )
            failed = Job.fetch(job_id_for(broken, here.ident), connection, serializer=JSONSerializer)
            failed_end = (failed.get_status(), failure_cool_down(failed), failed.latest_result().exc_string)
            cooling = sweep(connection, here.database_url)
        # The other database's same content: its own job, at once.
        there.start_worker()
        there_report = there.enqueue(ids)
        there.wait_settled(count, 120, "the other database's contents")
        # Past the cool-down (the clock moved on), the sweep enqueues it again; it is classified.
        real_now = jobs.queue.now
        monkeypatch.setattr(
            jobs.queue, "now", lambda: real_now() + timedelta(seconds=POST_FAILURE_COOL_DOWN + 1)
        )
        retried = sweep(connection, here.database_url)
        monkeypatch.undo()
        here.wait_settled(count, 120, "the broken content after its cool-down")
        registry_after = queue.failed_job_registry.get_job_ids(cleanup=False)
    finally:
        connection.close()
    here_result, there_result = here.account(), there.account()
    wrong = misattributed(here.database_url, here.redis_url) + misattributed(
        there.database_url, there.redis_url
    )
    record_metrics(
        "8d cool-down per database",
        contents=2 * count,
        faults="one post of database A fails on every attempt (a trigger); database B has the same "
        "content id; A's sweep during and after the cool-down",
        cooling_down=len(cooling.cooling_down),
        retried_after_failure=len(retried.retried_after_failure),
        lost=len(here_result.lost) + len(there_result.lost),
        doubled=len(here_result.doubled) + len(there_result.doubled),
        misattributed=len(wrong),
    )
    assert report.enqueued == ids
    assert failed_end[:2] == (JobStatus.FAILED, POST_FAILURE_COOL_DOWN)
    assert "refusing to store content" in failed_end[2]
    assert cooling.cooling_down == [broken] and cooling.enqueued == []
    assert there_report.enqueued == ids and there_report.cooling_down == []
    assert retried.enqueued == retried.retried_after_failure == [broken]
    assert registry_after == []
    assert wrong == []
    for result in (here_result, there_result):
        assert result.lost == [] and result.doubled == [] and result.stranded == [], result
        assert result.classified == count and not result.failed, result


def test_worker_process_helper_listens_on_the_database_queue(tmp_path: Path) -> None:
    """The fault suite's workers listen where their database's jobs are (VOLFEFE_QUEUE)."""
    worker = WorkerProcess(
        "redis://x", "sqlite://", tmp_path, tmp_path / "w.log", env={"VOLFEFE_QUEUE": SECOND_QUEUE}
    )
    assert worker.command[2] == SECOND_QUEUE
    assert WorkerProcess("redis://x", "sqlite://", tmp_path, tmp_path / "w.log").command[2] == QUEUE_NAME
