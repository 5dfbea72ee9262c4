"""The scale part: the queue and the database at 100,000 and 1,000,000 contents, without the model.

``python -m bench.scale --model DIR [--sizes 100000,1000000]`` (bench.run calls ``measure_scale``).

For each size: a fresh PostgreSQL database filled with that many unclassified contents, a private
redis-server configured as the embedded one, and the product's own commands, each timed from start to
exit: ``enqueue.py --all --dry-run``, ``enqueue.py --all``, the same again while every job waits,
``volfefe status``; the sweep's query (``db.queries.unclassified_id_pages``) in-process with its plan; Redis
bytes per waiting job; then, with Redis emptied, the hourly sweep as the scheduler runs it (the
catch-up sweep job ``jobs.schedule.enqueue_catch_up_sweep`` enqueues, run by a real
``workers.FinbertWorker`` under its job timeout), timed from the job's start to its end in Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import text

from bench.common import REPO, child_env, log, stop_process, wait_until, write_json

#: contents per size measured by default.
SIZES = (100_000, 1_000_000)
#: readings of the sweep's query (the least is reported).
QUERY_READINGS = 3
#: seconds a measured command may run before the part gives up on it.
COMMAND_TIMEOUT = 1800.0
VENV_BIN = Path(sys.executable).parent


@contextlib.contextmanager
def servers(work_dir: Path) -> Iterator[tuple[Any, Any]]:
    """A private PostgreSQL server and a redis-server with the embedded Redis's configuration."""
    from services.redis_server import RedisServer
    from tests.servers import PostgresServer

    postgres = PostgresServer(work_dir / "postgres")
    redis_server = RedisServer(work_dir / "redis")
    try:
        postgres.start()
        redis_server.start()
        yield postgres, redis_server
    finally:
        with contextlib.suppress(Exception):
            redis_server.stop()
        with contextlib.suppress(Exception):
            postgres.stop()


def fill(database_url: str, contents: int) -> float:
    """Migrate and insert ``contents`` unclassified posts in one statement; seconds taken."""
    from db.migrate import upgrade
    from db.session import engine_for

    started = time.perf_counter()
    upgrade(database_url)
    with engine_for(database_url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contents (source, external_id, text) "
                "SELECT 'bench', n::text, 'Stocks rally on strong earnings, post ' || n "
                "FROM generate_series(1, :contents) AS n"
            ),
            {"contents": contents},
        )
        connection.execute(text("ANALYZE contents"))
    return time.perf_counter() - started


def sweep_query(database_url: str) -> dict[str, Any]:
    """The sweep's query (``db.queries.unclassified_id_pages``): one page (what the sweep waits for
    before it enqueues), all pages, and whether the plan uses an index; least of QUERY_READINGS readings."""
    from db.queries import UNCLASSIFIED_PAGE, unclassified_id_pages
    from db.session import engine_for, session_scope

    first_page, all_pages = [], []
    rows = 0
    for _ in range(QUERY_READINGS):
        with session_scope(database_url) as session:
            started = time.perf_counter()
            pages = unclassified_id_pages(session)
            rows = len(next(pages, []))
            first_page.append(time.perf_counter() - started)
            rows += sum(len(page) for page in pages)
            all_pages.append(time.perf_counter() - started)
    with engine_for(database_url).connect() as connection:
        plan = connection.execute(
            text(
                "EXPLAIN SELECT id FROM contents WHERE classified = false AND skip_reason IS NULL "
                "AND id > 500000 ORDER BY id LIMIT :page"
            ),
            {"page": UNCLASSIFIED_PAGE},
        ).scalars()
        plan_text = "\n".join(plan)
    return {
        "page_s": min(first_page),
        "page_rows": UNCLASSIFIED_PAGE,
        "all_pages_s": min(all_pages),
        "rows": rows,
        "uses_index": "Index" in plan_text,
        "plan": plan_text,
    }


def timed_command(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one of the product's commands; its wall time, exit code and last line of output."""
    started = time.perf_counter()
    finished = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    seconds = time.perf_counter() - started
    output = (finished.stdout + finished.stderr).strip().splitlines()
    return {"s": seconds, "exit": finished.returncode, "last_line": output[-1] if output else ""}


def scheduled_sweep(redis_url: str, env: dict[str, str], work_dir: Path) -> dict[str, Any]:
    """The sweep as the scheduler runs it: its catch-up job, taken by a real FinbertWorker, within the
    sweep's job timeout. The worker is stopped once the sweep job has ended (before the backlog)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from jobs.schedule import SWEEP_TIMEOUT, catch_up_job_id, enqueue_catch_up_sweep, sweep_scheduler

    connection = Redis.from_url(redis_url)
    queue_name = env.get("VOLFEFE_QUEUE", "ml_classification")
    assert enqueue_catch_up_sweep(sweep_scheduler(connection, queue_name, 60.0))
    job_id = catch_up_job_id(queue_name)
    log_path = work_dir / "sweep-worker.log"
    with log_path.open("ab") as log_file:
        worker = subprocess.Popen(
            [str(VENV_BIN / "rq"), "worker", queue_name, "-w", "workers.FinbertWorker", "--url", redis_url],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)

        def ended() -> bool:
            return job.get_status(refresh=True).value in ("finished", "failed", "stopped", "canceled")

        wait_until(ended, SWEEP_TIMEOUT + 300, 0.5, "the sweep job to end")
        job.refresh()
        seconds = (job.ended_at - job.started_at).total_seconds() if job.ended_at and job.started_at else None
        return {
            "status": job.get_status().value,
            "s": seconds,
            "timeout_s": SWEEP_TIMEOUT,
            "result": job.return_value(),
        }
    finally:
        stop_process(worker, timeout=30)
        connection.close()


def measure_size(
    postgres: Any, redis_server: Any, model: Path, contents: int, work_dir: Path
) -> dict[str, Any]:
    name = f"scale_{contents}"
    database_url = postgres.create_database(name)
    redis_url = redis_server.url
    connection = Redis.from_url(redis_url)
    connection.flushall()
    env = child_env(DATABASE_URL=database_url, REDIS_URL=redis_url, FINBERT_MODEL=str(model))
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    python = str(VENV_BIN / "python")
    figures: dict[str, Any] = {"contents": contents}
    try:
        log(f"scale {contents}: filling PostgreSQL")
        figures["fill_s"] = fill(database_url, contents)
        figures["sweep_query"] = sweep_query(database_url)
        query = figures["sweep_query"]
        log(
            f"scale {contents}: sweep query {query['page_s'] * 1000:.1f} ms a page, {query['all_pages_s']:.2f} s all"
        )
        figures["dry_run"] = timed_command([python, "enqueue.py", "--all", "--dry-run"], env)
        before = int(connection.info("memory")["used_memory"])
        figures["enqueue"] = timed_command([python, "enqueue.py", "--all"], env)
        after = int(connection.info("memory")["used_memory"])
        figures["enqueue"]["jobs_per_s"] = contents / figures["enqueue"]["s"]
        figures["jobs_waiting"] = int(connection.llen("rq:queue:ml_classification"))
        figures["redis_bytes_per_job"] = (after - before) / max(figures["jobs_waiting"], 1)
        log(f"scale {contents}: enqueue {figures['enqueue']['s']:.1f} s ({figures['enqueue']['last_line']})")
        figures["second_enqueue"] = timed_command([python, "enqueue.py", "--all"], env)
        log(f"scale {contents}: second enqueue {figures['second_enqueue']['s']:.1f} s")
        figures["status"] = timed_command([str(VENV_BIN / "volfefe"), "status"], env)
        connection.flushall()
        log(f"scale {contents}: the hourly sweep as the scheduler runs it")
        figures["scheduled_sweep"] = scheduled_sweep(redis_url, env, work_dir)
        log(f"scale {contents}: scheduled sweep {figures['scheduled_sweep']}")
    finally:
        connection.flushall()
        connection.close()
        with contextlib.suppress(Exception):
            postgres.drop_database(name)
    return figures


def measure_scale(model: Path, work_dir: Path, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Every figure of the scale part, per size."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with servers(work_dir) as (postgres, redis_server):
        return {"sizes": [measure_size(postgres, redis_server, model, size, work_dir) for size in sizes]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, type=Path, help="a model folder (the sweep's worker loads it)"
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated content counts")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/volfefe-bench-scale"))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = tuple(int(size) for size in args.sizes.split(","))
    figures = measure_scale(args.model, args.work_dir, sizes)
    if args.out:
        write_json(args.out, figures)
    for size in figures["sizes"]:
        query = {key: value for key, value in size["sweep_query"].items() if key != "plan"}
        print({key: value for key, value in size.items() if key != "sweep_query"} | {"sweep_query": query})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
