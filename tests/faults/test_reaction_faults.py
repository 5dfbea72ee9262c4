"""Scenario: ``kill -9`` of a worker in the middle of a batch of reaction jobs, while ``volfefe
import-prices`` brings bars that change those very reactions.

Posts of one trading day D, classified by the real workers (which link them to SPY, AAPL or both and
enqueue their reactions), and minute bars through D: every post's 1-day window ends on D+1, so its
reaction waits for prices. The first third react before anything happens. Then both workers are caught
at the write of a reaction batch (their bars read: D's), one is killed with its process group, and the
import of D+1 and D+2 runs as a subprocess: its enqueue finds the first third's jobs finished (enqueued
again) and the others waiting or running (left as they are). The held batch of the live worker is then
stored from the bars it read before the import, so it must count as older than the import: the hourly
sweep, run as the scheduler runs it, computes it again. The killed worker's batch is recovered when its
heartbeats expire (about 45 s, see test_kill.py).

At the end every post has one row per linked symbol and window, none awaits prices, recomputing every
reaction from the stored bars changes nothing, and no job is lost, doubled, failed or stranded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from rq import Worker
from rq.job import Job
from sqlalchemy import select

from config import load_settings
from db.models import Content, Reaction
from db.session import session_scope
from jobs.queue import SERIALIZER, classification_queue, react_job_id_for
from jobs.react import react_contents, reactions_due
from jobs.rq_seam import job_statuses
from jobs.sweep import hourly_sweep
from market.calendar import to_datetime, trading_calendar
from market.importer import import_prices_file
from market.settings import market_settings
from market.synthetic import intraday_bars, write_bars
from tests.faults.accounting import account_reactions
from tests.faults.conftest import FULL_BATCHES, FaultRun
from tests.faults.test_kill import RECOVERY_BOUND

pytestmark = [pytest.mark.faults, pytest.mark.integration]

POSTS = 300
#: posts whose reactions are stored before the faults (the import enqueues them again).
FIRST = 96
#: jobs per batch (WORKER_BATCH_JOBS of the suite).
BATCH = 32
#: the posts' trading day (a Tuesday), and the sessions of baseline bars before it.
DAY = date(2025, 6, 10)
BASELINE_SESSIONS = 62
#: what the posts say, and so which assets the classification job links them to.
TEXTS = ("$AAPL beats estimates", "The Stock Market is at an ALL TIME HIGH!", "Apple stock and $SPY")
SYMBOLS = ("SPY", "AAPL")
ROOT = Path(__file__).resolve().parents[2]


def bar_files(folder: Path) -> tuple[Path, Path]:
    """Random-walk minute bars of SYMBOLS: through DAY's close, and the next two sessions."""
    calendar = trading_calendar()
    day = calendar.session_index(DAY)
    assert day is not None
    first, last = calendar.sessions[day - BASELINE_SESSIONS], calendar.sessions[day + 2]
    bars = [
        bar
        for seed, symbol in enumerate(SYMBOLS)
        for bar in intraday_bars(calendar, symbol, first, last, seed=seed, sigma=0.0008)
    ]
    through, after = folder / "through-day.csv", folder / "after-day.csv"
    write_bars(through, [bar for bar in bars if bar.start < calendar.closes[day]])
    write_bars(after, [bar for bar in bars if bar.start >= calendar.closes[day]])
    return through, after


def add_posts(run: FaultRun) -> list[int]:
    """POSTS posts through DAY's session, 75 s apart, in order of id."""
    calendar = trading_calendar()
    opening = calendar.opens[calendar.session_index(DAY)]
    with session_scope(run.database_url) as session:
        posts = [
            Content(
                source="truth",
                external_id=f"p{index}",
                text=f"{TEXTS[index % len(TEXTS)]} #{index}",
                published_at=to_datetime(opening + 60 + 75 * index),
            )
            for index in range(POSTS)
        ]
        session.add_all(posts)
        session.flush()
        return [post.id for post in posts]


def reacted(run: FaultRun, ids: list[int]) -> int:
    with session_scope(run.database_url) as session:
        found = session.scalars(select(Reaction.content_id).where(Reaction.content_id.in_(ids)).distinct())
        return len(list(found))


def records(run: FaultRun) -> dict[tuple[int, str, str], dict]:
    with session_scope(run.database_url) as session:
        rows = session.execute(select(Reaction.content_id, Reaction.symbol, Reaction.window, Reaction.record))
        return {(content_id, symbol, window): record for content_id, symbol, window, record in rows}


def import_prices(run: FaultRun, path: Path) -> subprocess.CompletedProcess[str]:
    """``volfefe import-prices`` as a user runs it, on this run's database and Redis."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "import-prices", "--resolution", "1m", str(path)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": run.database_url, "REDIS_URL": run.redis_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_kill_9_mid_reaction_batch_with_an_import_racing(
    fault_run: FaultRun, tmp_path: Path, record_metrics
) -> None:
    url = fault_run.database_url
    config = load_settings({"DATABASE_URL": url, "REDIS_URL": fault_run.redis_url})
    windows = [window.label for window in market_settings().windows]
    through_day, after_day = bar_files(tmp_path)
    assert import_prices_file(url, through_day, "1m").ok
    ids = add_posts(fault_run)
    first, second = (fault_run.start_worker(wait_ready=False, env=FULL_BATCHES) for _ in range(2))
    for worker in (first, second):
        fault_run.wait(lambda w=worker: "Worker: model" in w.log(), 120, "the workers to load the model")
    connection = fault_run.redis()
    started_key = classification_queue(connection).started_job_registry.key

    fault_run.enqueue(ids[:FIRST])  # classified, linked, their reactions enqueued by the workers and stored
    fault_run.wait(
        lambda: reacted(fault_run, ids) == FIRST and fault_run.live_jobs() == 0, 60, "the first third"
    )

    with fault_run.writes_held("reactions"):  # both workers caught at the write of a reaction batch
        fault_run.enqueue(ids[FIRST:])
        fault_run.wait(lambda: fault_run.blocked_writers() >= 2, 60, "both workers to be mid-batch")
        held = {member.decode().rsplit(":", 1)[0] for member in connection.zrange(started_key, 0, -1)}
        workers = {worker.pid: worker.name for worker in Worker.all(connection=connection)}
        owner = {job.id: job.worker_name for job in Job.fetch_many(list(held), connection, SERIALIZER) if job}
        fault_run.kill_group(first)
        killed_at = time.time()
        imported = import_prices(fault_run, after_day)  # the live worker's batch read D's bars only
    assert imported.returncode == 0, imported.stderr
    abandoned = {job_id for job_id in held if owner[job_id] == workers[first.pid]}
    stale = sorted(int(job_id.split("-")[2]) for job_id in held - abandoned)
    assert abandoned and stale and len(held) <= 2 * BATCH, (held, owner, workers)
    assert (
        f"enqueued {FIRST} (of which {FIRST} again after new prices), "
        f"already waiting or running {POSTS - FIRST}," in imported.stdout
    ), imported.stdout

    abandoned_posts = sorted(int(job_id.split("-")[2]) for job_id in abandoned)
    others = [react_job_id_for(post, fault_run.ident) for post in ids if post not in abandoned_posts]
    fault_run.wait(
        lambda: set(job_statuses(connection, others)) == {"finished"}, 60, "the other reaction jobs to end"
    )
    with session_scope(url) as session:
        due = reactions_due(session)
    # Missing: the killed batch's (their jobs still started); older than the import: the held batch's.
    assert due == sorted(abandoned_posts + stale), (due, abandoned_posts, stale)
    hourly_sweep(connection, config)  # as the scheduler runs it, while the killed batch waits
    fault_run.wait(
        lambda: reacted(fault_run, abandoned_posts) == len(abandoned),
        RECOVERY_BOUND + 60,
        "the killed batch recovered",
    )
    recovery = time.time() - killed_at
    fault_run.wait(
        lambda: reacted(fault_run, ids) == POSTS and fault_run.live_jobs() == 0, 60, "every job to end"
    )
    result = account_reactions(url, fault_run.redis_url, windows)
    classified = fault_run.account()
    stored = records(fault_run)
    with session_scope(url) as session:
        due_after = reactions_due(session)
    react_contents([(post, fault_run.ident) for post in ids], url, config=config)  # from the final bars
    connection.close()
    record_metrics(
        "R1 kill -9 mid reaction batch, import racing",
        posts=POSTS,
        faults=f"SIGKILL of a worker mid reaction batch ({len(abandoned)} jobs started); "
        f"`volfefe import-prices` of the next 2 sessions while the other worker held {len(stale)} "
        f"reactions read before it; {FIRST} already stored",
        lost=len(result.lost),
        doubled=len(result.doubled),
        stranded=len(result.stranded),
        failed=len(result.failed),
        recomputed_by_import=FIRST,
        recomputed_by_sweep=len(stale),
        recovery_s=round(recovery, 1),
    )
    assert result.lost == [] and result.doubled == [] and result.partial == [], result
    assert result.reacted == POSTS and not result.failed and not result.pending, result
    assert result.stranded == [], f"jobs left in the intermediate queue: {result}"
    assert classified.lost == [] and classified.doubled == [] and classified.classified == POSTS, classified
    assert {record["status"] for record in stored.values()} == {"ok"}, (
        "a reaction left from before the import"
    )
    assert due_after == []
    assert records(fault_run) == stored, "a stored reaction differs from one computed from the final bars"
    assert recovery <= RECOVERY_BOUND, f"recovery took {recovery:.1f}s\n{fault_run.logs()}"
