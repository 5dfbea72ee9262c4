"""The reaction of many posts end to end on PostgreSQL, against the hourly sweep's timeout.

    python -m bench.reaction_sweep --model DIR [--posts 100000] [--sessions 250]

(``bench.run`` calls ``measure_reaction_sweep``: part ``reactions``.) A private PostgreSQL server and
redis-server; a fresh database holding SYMBOLS' synthetic minute bars over ``sessions`` sessions
(imported by the product's importer; not timed) and ``posts`` published posts spread evenly over the
sessions after the first baseline (ids in time order, as a feed's import gives them), each linked to one
of SYMBOLS in turn and every third also to SPY: ``content_assets`` and ``content_entities`` rows inserted
directly (extracting them through classification would take longer than what is measured). Two warm
``rq worker ml_classification -w workers.FinbertWorker`` processes (WORKER_PROCESSES=2) are started and
waited for. Then the clock starts: the hourly sweep's reaction step (``jobs.sweep.sweep_reactions``: the
``reactions_due`` query and ``enqueue_reactions``; the query is also timed alone beforehand), and the
workers compute and store every reaction. The end is the latest ``ended_at`` of the jobs (a job ends
after its reactions are committed), found once a poll of the queue and its registries sees no job left;
every post's reactions are then counted in the database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import text

from bench.common import log, stop_process, wait_until, write_json
from bench.pipeline import READY_TIMEOUT, WorkerProcess, cpu_seconds, worker_env

#: posts measured (full run, --quick).
POSTS = (100_000, 10_000)
#: sessions of minute bars (full run, --quick): the first 62 are the first posts' baseline.
SESSIONS = (250, 120)
#: the symbols posts are linked to, in turn (every third post is linked to SPY too).
SYMBOLS = ("SPY", "AAPL", "TSLA", "XOM")
#: the last session of the bars (posts end a session before it).
LAST_SESSION = "2025-06-30"
#: sessions before the first post: the 60-session baseline and a margin.
BASELINE_SESSIONS = 62
#: worker processes, as on the 2-core machine the product targets.
WORKERS = 2
#: seconds between two looks at the queue while the workers compute.
POLL_INTERVAL = 0.25
#: seconds the workers get beyond the sweep's timeout before the run is abandoned.
OVERRUN = 600.0


def fill(database_url: str, posts: int, sessions: int, work_dir: Path) -> dict[str, Any]:
    """Bars, posts and their links; the seconds each took and the span of the posts."""
    from db.migrate import upgrade
    from db.session import engine_for
    from entities.mentions import JSON_SCHEMA
    from market.calendar import trading_calendar
    from market.importer import import_prices
    from market.synthetic import intraday_bars, write_bars

    upgrade(database_url)
    calendar = trading_calendar()
    last = calendar.session_index(datetime.fromisoformat(LAST_SESSION).date())
    assert last is not None
    first = last - sessions
    started = time.perf_counter()
    path = work_dir / "bars.csv"
    bars = write_bars(
        path,
        (
            bar
            for seed, symbol in enumerate(SYMBOLS)
            for bar in intraday_bars(
                calendar, symbol, calendar.sessions[first], calendar.sessions[last], seed=seed, sigma=0.0008
            )
        ),
    )
    engine = engine_for(database_url)
    report = import_prices(engine, path, "1m")
    path.unlink()
    assert report.ok and report.inserted == bars, report
    bars_s = time.perf_counter() - started
    start, end = calendar.opens[first + BASELINE_SESSIONS], calendar.opens[last - 1]
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contents (source, external_id, text, published_at) "
                "SELECT 'bench', n::text, 'post ' || n, to_timestamp(:start + (n - 1) * :step) "
                "FROM generate_series(1, :posts) AS n"
            ),
            {"start": start, "step": (end - start) / posts, "posts": posts},
        )
        connection.execute(
            text(
                "INSERT INTO content_assets (content_id, symbol, kind, method, mentions) "
                "WITH turn AS (SELECT id, (CAST(:symbols AS text[]))[id % :count + 1] AS symbol FROM contents) "
                "SELECT id, symbol, CASE WHEN symbol = 'SPY' THEN 'etf' ELSE 'equity' END, 'cashtag', 1 FROM turn "
                "UNION ALL SELECT id, 'SPY', 'etf', 'alias', 1 FROM turn WHERE id % 3 = 0 AND symbol <> 'SPY'"
            ),
            {"symbols": list(SYMBOLS), "count": len(SYMBOLS)},
        )
        connection.execute(
            text(
                "INSERT INTO content_entities (content_id, document, assets_version) "
                "SELECT content_id, jsonb_build_object('schema', :schema, 'mentions', '[]'::jsonb, "
                "'links', jsonb_agg(jsonb_build_object('symbol', symbol, 'kind', kind, 'method', method, "
                "'mentions', mentions) ORDER BY symbol), 'assets_version', 'bench', 'ner_model', NULL), "
                "'bench' FROM content_assets GROUP BY content_id"
            ),
            {"schema": JSON_SCHEMA},
        )
        links = connection.execute(text("SELECT count(*) FROM content_assets")).scalar_one()
        connection.execute(text("ANALYZE"))
    return {
        "bars": bars,
        "bars_s": bars_s,
        "posts": posts,
        "links": links,
        "posts_s": time.perf_counter() - started,
        "first_post": datetime.fromtimestamp(start, UTC).isoformat(),
        "last_post": datetime.fromtimestamp(end, UTC).isoformat(),
        "sessions": sessions,
    }


def jobs_left(connection: Redis, queue: Any) -> int:
    """Jobs waiting, started, scheduled for a retry, or taken but not started."""
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.llen(queue.key)
        pipeline.zcard(queue.started_job_registry.key)
        pipeline.zcard(queue.scheduled_job_registry.key)
        pipeline.llen(queue.intermediate_queue_key)
        return sum(pipeline.execute())


def latest_end(connection: Redis, job_ids: list[str]) -> tuple[datetime | None, dict[str, int]]:
    """The latest ``ended_at`` among ``job_ids``, and how many ended in each status."""
    from rq.job import Job
    from rq.utils import utcparse

    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hmget(Job.key_for(job_id), "ended_at", "status")
        rows = pipeline.execute()
    statuses: dict[str, int] = {}
    latest = None
    for ended, status in rows:
        label = status.decode() if status else "missing"
        statuses[label] = statuses.get(label, 0) + 1
        if ended:
            moment = utcparse(ended.decode()).replace(tzinfo=UTC)
            latest = moment if latest is None or moment > latest else latest
    return latest, statuses


def stored(database_url: str) -> dict[str, Any]:
    """Posts with reactions, reaction rows by status, event paths."""
    from db.session import engine_for

    with engine_for(database_url).connect() as connection:
        posts = connection.execute(text("SELECT count(DISTINCT content_id) FROM reactions")).scalar_one()
        statuses = dict(
            connection.execute(text("SELECT status, count(*) FROM reactions GROUP BY status")).all()
        )
        paths = connection.execute(text("SELECT count(*) FROM reaction_paths")).scalar_one()
    return {"posts_with_reactions": posts, "reactions_by_status": statuses, "paths": paths}


def measure_reaction_sweep(
    model: Path,
    work_dir: Path,
    posts: int = POSTS[0],
    sessions: int = SESSIONS[0],
    profile: Path | None = None,
) -> dict[str, Any]:
    """Every figure of the part (see the module's docstring). ``profile``: a file where ``py-spy record``
    writes the first worker's samples (raw, collapsed stacks) while the jobs run."""
    from bench.scale import servers
    from config import DEFAULT_PRECISION, load_settings
    from db.identity import database_id
    from db.session import engine_for, session_factory
    from jobs.queue import classification_queue, react_job_id_for
    from jobs.react import reactions_due
    from jobs.schedule import SWEEP_TIMEOUT
    from jobs.sweep import sweep_reactions

    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)
    figures: dict[str, Any] = {"sweep_timeout_s": SWEEP_TIMEOUT, "workers": WORKERS}
    with servers(work_dir) as (postgres, redis_server):
        database_url = postgres.create_database("reactions_sweep")
        log(f"reactions: {posts:,} posts and {sessions} sessions of minute bars of {len(SYMBOLS)} symbols")
        figures.update(fill(database_url, posts, sessions, work_dir))
        log(
            f"reactions: filled ({figures['bars']:,} bars in {figures['bars_s']:.0f} s, {figures['links']:,} links)"
        )
        env = worker_env(model, DEFAULT_PRECISION, WORKERS, database_url)
        workers = [
            WorkerProcess(redis_server.url, env, work_dir / f"reaction-worker-{n}.log")
            for n in range(WORKERS)
        ]
        connection = Redis.from_url(redis_server.url)
        try:
            for worker in workers:
                worker.start()
            wait_until(
                lambda: all(w.ready() or not w.running for w in workers), READY_TIMEOUT, 0.2, "workers"
            )
            dead = [worker.log()[-2000:] for worker in workers if not worker.running]
            if dead:
                raise RuntimeError(f"a worker exited while starting:\n{dead[0]}")
            config = load_settings({"DATABASE_URL": database_url, "REDIS_URL": redis_server.url})
            with session_factory(database_url)() as session:
                started = time.perf_counter()
                due = reactions_due(session)
                figures["due_query_s"] = time.perf_counter() - started
            figures["due"] = len(due)
            cpu_before = [cpu_seconds(worker.pid) for worker in workers]
            load_start = os.getloadavg()[0]
            clock = datetime.now(UTC)
            started = time.perf_counter()
            sampler = sample(workers[0].pid, profile) if profile else None
            report = sweep_reactions(connection, config)
            figures["sweep_step_s"] = time.perf_counter() - started
            figures["enqueued"] = len(report.enqueued)
            log(
                f"reactions: the sweep's step enqueued {len(report.enqueued):,} in {figures['sweep_step_s']:.1f} s"
            )
            queue = classification_queue(connection)
            deadline = SWEEP_TIMEOUT + OVERRUN

            def finished() -> bool:
                if any(not worker.running for worker in workers):
                    raise RuntimeError(f"a worker exited:\n{workers[0].log()[-2000:]}")
                return jobs_left(connection, queue) == 0

            wait_until(finished, deadline, POLL_INTERVAL, "every reaction job to end")
            seen_done = time.perf_counter() - started
            if sampler is not None:
                stop_process(sampler, timeout=30, sig=signal.SIGINT)
            figures["load"] = [load_start, os.getloadavg()[0]]
            figures["worker_cpu_s"] = [
                cpu_seconds(w.pid) - before for w, before in zip(workers, cpu_before, strict=True)
            ]
            identity = database_id(database_url)
            last, statuses = latest_end(connection, [react_job_id_for(post, identity) for post in due])
            figures["jobs_by_status"] = statuses
            figures["wall_s"] = (last - clock).total_seconds() if last else seen_done
            figures["jobs_per_s"] = len(report.enqueued) / figures["wall_s"]
            figures["fits"] = figures["wall_s"] <= SWEEP_TIMEOUT and statuses.get("finished", 0) == posts
            figures.update(stored(database_url))
            log(f"reactions: {figures['wall_s']:.0f} s from the sweep's start to the last job's end")
        finally:
            for worker in workers:
                worker.stop()
            connection.close()
            engine_for(database_url).dispose()
    figures["output"] = summary_lines(figures)
    return figures


def sample(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` (every thread, idle included) into ``path``, until SIGINT."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    command = [
        py_spy,
        "record",
        "--idle",
        "--rate",
        "50",
        "--format",
        "raw",
        "-o",
        str(path),
        "--pid",
        str(pid),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def summary_lines(figures: dict[str, Any]) -> list[str]:
    """What the command prints, and the report quotes."""
    cpu = " + ".join(f"{seconds:.0f}" for seconds in figures["worker_cpu_s"])
    return [
        f"{figures['posts']:,} posts ({figures['first_post'][:10]} .. {figures['last_post'][:10]}), "
        f"{figures['links']:,} links to {len(SYMBOLS)} symbols, {figures['bars']:,} minute bars "
        f"({figures['sessions']} sessions); {figures['workers']} workers",
        f"reactions_due alone: {figures['due_query_s']:.2f} s for {figures['due']:,} posts; the sweep's step "
        f"(query + enqueue): {figures['sweep_step_s']:.1f} s, {figures['enqueued']:,} jobs enqueued "
        f"({figures['enqueued'] / figures['sweep_step_s']:,.0f} jobs/s)",
        f"sweep start to last job ended: {figures['wall_s']:.1f} s = {figures['jobs_per_s']:,.0f} jobs/s; "
        f"the sweep's timeout {figures['sweep_timeout_s']} s: {'fits' if figures['fits'] else 'DOES NOT FIT'}",
        f"jobs {figures['jobs_by_status']}; stored: {figures['posts_with_reactions']:,} posts with reactions, "
        f"rows {figures['reactions_by_status']}, {figures['paths']:,} event paths",
        f"worker CPU {cpu} s; load {figures['load'][0]:.2f} -> {figures['load'][1]:.2f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reaction_sweep", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True, type=Path, help="a model folder (the workers load it)")
    parser.add_argument("--posts", type=int, default=POSTS[0])
    parser.add_argument("--sessions", type=int, default=SESSIONS[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--profile", type=Path, help="py-spy's samples of the first worker (needs py-spy)")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="volfefe-reaction-sweep-"))
    try:
        figures = measure_reaction_sweep(args.model, work_dir, args.posts, args.sessions, args.profile)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if args.out:
        write_json(args.out, figures)
    print("\n".join(figures["output"]))
    print(json.dumps({key: value for key, value in figures.items() if key != "output"}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
