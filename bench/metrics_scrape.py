"""What one ``/metrics`` scrape costs the database: PostgreSQL with N seeded classifications.

    python -m bench.metrics_scrape [--rows 200000] [--repeat 5]

Starts a private PostgreSQL server, migrates a database, seeds N contents and N classifications with a
full audit document (``jobs.audit``, batches of 256 in passes of 32), then times, as the median of
``--repeat`` runs, each query of ``db.metric_queries`` and a whole scrape of the collectors
(``generate_latest``; Redis is an in-memory fake here: its part is a few O(1) reads plus one read per
worker and per failed job). Two cases: every classification stored inside the histogram window
(a backlog classified today: the most the histograms read) and 1% of them inside it (steady state).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: classifications per batch and rows per forward pass in the seeded audit (the worker's defaults).
SEED_BATCH_ITEMS = 256
SEED_PASS_ROWS = 32

_SEED = """
INSERT INTO contents (id, source, external_id, author, text, classified, skip_reason)
SELECT i, 'bench', 'b' || i, 'author ' || (i % 50),
       'Stocks rally as the central bank holds rates; shares of bank ' || i || ' rise after earnings beat',
       i % 20 <> 0, CASE WHEN i % 40 = 0 THEN 'no_text_to_classify' END
FROM generate_series(1, {rows}) AS i;

INSERT INTO classifications (content_id, sentiment, confidence, model_version, meta, created_at)
SELECT i, (ARRAY['positive', 'negative', 'neutral'])[1 + i % 3], 0.5 + (i % 50) / 100.0,
       'yiyanghkust/finbert-tone@4921590d3c0c+bf16',
       jsonb_build_object(
         'raw_scores', jsonb_build_object('positive', 0.7, 'negative', 0.2, 'neutral', 0.1),
         'text', jsonb_build_object('characters', 96, 'input_characters', 96, 'cut', false, 'tokens', 24,
                                    'windows', 1, 'quote', false, 'repost', false,
                                    'sha256', md5(i::text) || md5((i + 1)::text)),
         'quality', jsonb_build_object('margin', 0.5, 'entropy', 0.8),
         'processing', jsonb_build_object(
           'classified_at', to_char(now() - make_interval(secs => i % 3600), 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"'),
           'model_seconds', 0.004 + (i % 100) / 10000.0, 'attempt', 1, 'worker', 'bench-worker',
           'engine', 'torch', 'precision', 'bf16', 'model_version', 'yiyanghkust/finbert-tone@4921590d3c0c+bf16',
           'batch', jsonb_build_object(
             'enqueued_at', to_char(now() - make_interval(secs => i % 3600 + (i % 600)),
                                    'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"'),
             'items', {items},
             'forward_passes', (SELECT jsonb_agg({pass_rows}) FROM generate_series(1, {passes}))))),
       now() - make_interval(hours => CASE WHEN i % 100 < {recent_percent} THEN 0 ELSE 72 END)
FROM generate_series(1, {rows}) AS i
WHERE i % 20 <> 0;
"""


#: the scrape's indexes (migration 0004), dropped to measure without them (``--without-indexes``):
#: the histograms' window, and the counts by sentiment and model version read from an index.
SCRAPE_INDEXES_DROPPED = (
    "DROP INDEX ix_classifications_created_at",
    "DROP INDEX ix_classifications_sentiment_model",
)


def _median_seconds(action: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def measure(url: str, repeat: int) -> dict[str, float]:
    import fakeredis
    from prometheus_client import CollectorRegistry, generate_latest

    from config import DEFAULT_METRICS_WINDOW_MINUTES
    from db.metric_queries import classifications_by_sentiment, content_states, recent_audit
    from db.session import session_scope
    from jobs.metrics import (
        MODEL_SECONDS_BOUNDS,
        QUEUE_SECONDS_BOUNDS,
        DatabaseCollector,
        QueueCollector,
    )

    window = timedelta(minutes=DEFAULT_METRICS_WINDOW_MINUTES)
    since = datetime.now(UTC) - window

    def query(function: Callable, *args: object) -> Callable[[], object]:
        def run() -> object:
            with session_scope(url) as session:
                return function(session, *args)

        return run

    connection = fakeredis.FakeRedis()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(connection, "bench"))
    registry.register(DatabaseCollector(url, connection, "bench", window))
    return {
        "content_states": _median_seconds(query(content_states), repeat),
        "classifications_by_sentiment": _median_seconds(query(classifications_by_sentiment), repeat),
        "recent_audit": _median_seconds(
            query(recent_audit, since, MODEL_SECONDS_BOUNDS, QUEUE_SECONDS_BOUNDS), repeat
        ),
        "whole scrape": _median_seconds(lambda: generate_latest(registry), repeat),
    }


def seed(server, name: str, rows: int, recent_percent: int, indexes: bool = True) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    from db.migrate import upgrade

    url = server.create_database(name)
    upgrade(url)
    passes = SEED_BATCH_ITEMS // SEED_PASS_ROWS
    with psycopg.connect(server.conninfo(make_url(url).database), autocommit=True) as conn:
        seeding = _SEED.format(
            rows=rows,
            items=SEED_BATCH_ITEMS,
            pass_rows=SEED_PASS_ROWS,
            passes=passes,
            recent_percent=recent_percent,
        )
        for statement in seeding.split(";\n\n"):  # no parameters: each statement is sent as it is
            conn.execute(statement.encode())
        if not indexes:
            for statement in SCRAPE_INDEXES_DROPPED:
                conn.execute(statement.encode())
        conn.execute("VACUUM ANALYZE")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="contents to seed (95%% classified)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (median)")
    parser.add_argument(
        "--without-indexes", action="store_true", help="drop the scrape's indexes (migration 0004) first"
    )
    options = parser.parse_args()

    from db.session import engine_for
    from tests.servers import PostgresServer

    base = Path(tempfile.mkdtemp(prefix="volfefe-metrics-bench-"))
    base.chmod(0o755)  # the server runs as the postgres user when we are root
    server = PostgresServer(base / "data")
    try:
        server.start()
        for label, recent_percent in (("all in the window", 100), ("1% in the window", 1)):
            started = time.perf_counter()
            url = seed(
                server, f"metrics_{recent_percent}", options.rows, recent_percent, not options.without_indexes
            )
            print(f"\n{options.rows:,} contents, {label} (seeded in {time.perf_counter() - started:.0f} s)")
            for part, seconds in measure(url, options.repeat).items():
                print(
                    f"  {part:<30} {seconds * 1000:8.1f} ms   (x{1_000_000 / options.rows:g}: ~"
                    f"{seconds * 1_000_000 / options.rows * 1000:.0f} ms at 1M)"
                )
            engine_for(url).dispose()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
