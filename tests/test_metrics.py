"""/metrics: figures read at scrape time from Redis and the database, equal to what they hold.

- The audit's batch facts (``processing.batch``) are the classifier's real forward passes and the
  RQ job's real enqueue time, on the batch path and on the job path.
- The SQL figures (``db.metric_queries``) on SQLite and PostgreSQL: counts, cumulative buckets, the
  window that bounds the histograms.
- End to end: a real run (redis-server, PostgreSQL, two ``rq worker -w workers.FinbertWorker``
  processes, the tiny model, skips, refused jobs), then a real ``volfefe web`` scraped over HTTP and
  parsed with prometheus_client's parsers: every figure equals the database's and Redis's counts;
  scraping twice leaves every ``rq:*`` key as it was (even a dead worker's registration, which RQ's
  ``Worker.all`` would remove); no credentials, no figures (401).
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select, update

import config
from config import DEFAULT_METRICS_WINDOW_MINUTES
from db.identity import database_id
from db.metric_queries import ForwardPassShape, classifications_by_sentiment, content_states, recent_audit
from db.migrate import upgrade
from db.models import Classification, Consensus, Content
from db.session import engine_for, session_scope
from jobs.classify import classify_contents
from jobs.metrics import (
    FORWARD_PASS_BOUNDS,
    MODEL_SECONDS_BOUNDS,
    QUEUE_SECONDS_BOUNDS,
    forward_pass_buckets,
)
from jobs.queue import QUEUE_NAME, enqueue_ids, job_id_for
from tests.processes import WorkerProcess, wait_for
from tests.web_process import WebProcess, basic_auth, web_environment

USER, PASSWORD = "watcher", "metrics-test-password-1"
#: seconds for every job of the run to end.
JOBS_TIMEOUT = 120.0
FINAL = {"finished", "failed"}
_WORDS = "stocks rally on strong earnings shares fall after weak guidance profit loss growth outlook".split()
_external_ids = itertools.count()


def headline(index: int) -> str:
    rng = random.Random(index)
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + f" #{index}"


#: a post longer than the tiny model's 128 positions: read in several windows (several rows of passes).
LONG_POST = ". ".join(f"shares fall after weak guidance number {i}" for i in range(40)) + "."
#: posts with no visible text: skipped for good (no_text_to_classify).
NO_TEXT = ["", "  \n ", "<p><br/></p>"]


def add_contents(url: str, texts: list[str]) -> list[int]:
    with session_scope(url) as session:
        contents = [Content(source="metrics", external_id=f"m{next(_external_ids)}", text=t) for t in texts]
        session.add_all(contents)
        session.flush()
        return [content.id for content in contents]


def bucket_counts(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    return [sum(1 for value in values if value <= bound) for bound in bounds]


def seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


# -- the audit's batch facts are true --------------------------------------------------------------


@pytest.fixture
def db_url(migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The migrated database, also as DATABASE_URL (the RQ job reads the process settings)."""
    monkeypatch.setenv("DATABASE_URL", migrated_db)
    config.settings.cache_clear()
    yield migrated_db
    config.settings.cache_clear()


def metas(url: str) -> dict[int, dict]:
    with session_scope(url) as session:
        return {row.content_id: row.meta for row in session.scalars(select(Classification))}


def test_batch_facts_are_the_classifiers_forward_passes(
    db_url: str, classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int] = []
    forward = classifier._forward

    def counting_forward(input_ids):
        passes.append(len(input_ids))
        return forward(input_ids)

    monkeypatch.setattr(classifier, "_forward", counting_forward)
    monkeypatch.setattr(classifier, "batch_size", 3)
    ids = add_contents(db_url, [headline(i) for i in range(7)] + [LONG_POST])
    identity = database_id(db_url)
    enqueued = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    classify_contents([(i, identity) for i in ids], db_url, enqueued={(ids[0], identity): enqueued})

    stored = metas(db_url)
    assert set(stored) == set(ids)
    assert stored[ids[-1]]["text"]["windows"] > 1, "the long post should take several rows"
    assert sum(passes) == sum(meta["text"]["windows"] for meta in stored.values())
    for content_id, meta in stored.items():
        batch = meta["processing"]["batch"]
        assert batch["forward_passes"] == passes, "every item carries its batch's real passes"
        assert batch["items"] == len(ids)
        expected = "2026-01-02T03:04:05.678+00:00" if content_id == ids[0] else None
        assert batch["enqueued_at"] == expected


def test_the_rq_job_records_its_enqueue_time(db_url: str, classifier) -> None:
    """The job path (``classify_content`` run by a plain RQ worker) records ``job.enqueued_at``."""
    (content_id,) = add_contents(db_url, [headline(1)])
    connection = fakeredis.FakeRedis()
    queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("jobs.classify.classify_content", content_id, database_id(db_url))
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)

    job = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert job.get_status() == "finished", job.latest_result()
    batch = metas(db_url)[content_id]["processing"]["batch"]
    assert job.enqueued_at is not None
    assert batch["enqueued_at"] == job.enqueued_at.isoformat(timespec="milliseconds")
    assert batch["items"] == 1 and batch["forward_passes"] == [1]


# -- the SQL figures, SQLite and PostgreSQL ---------------------------------------------------------


def classification_row(
    content_id: int, sentiment: str, model_seconds: float | None, batch: dict | None
) -> dict:
    processing: dict = {"classified_at": "2026-01-02T03:04:10.000+00:00"}
    if model_seconds is not None:
        processing["model_seconds"] = model_seconds
    processing["batch"] = batch
    return {
        "content_id": content_id,
        "model": "finbert",
        "sentiment": sentiment,
        "confidence": 0.9,
        "model_version": "m1",
        "meta": {"processing": processing},
    }


def test_sql_figures_count_states_and_bucket_the_recent_window(migrated_db: str) -> None:
    ids = add_contents(migrated_db, [f"post {i}" for i in range(9)])
    enqueued = "2026-01-02T03:04:05.000+00:00"  # 5 s before classified_at
    two_passes = {"enqueued_at": enqueued, "items": 2, "forward_passes": [2]}
    rows = [
        classification_row(ids[0], "positive", 0.004, two_passes),
        classification_row(ids[1], "negative", 0.004, two_passes),
        classification_row(ids[2], "negative", 0.2, {"enqueued_at": None, "items": 1, "forward_passes": [1]}),
        classification_row(ids[3], "neutral", None, None),  # stored before the audit had these fields
        classification_row(
            ids[4], "neutral", 0.003, {"enqueued_at": enqueued, "items": 1, "forward_passes": [1]}
        ),
    ]
    other_model = {**classification_row(ids[0], "neutral", 0.05, two_passes), "model": "prosus"}
    with session_scope(migrated_db) as session:
        session.add_all(Classification(**row) for row in [*rows, other_model])
        session.execute(
            update(Content).where(Content.id.in_(ids[5:7])).values(skip_reason="no_text_to_classify")
        )
        # Older than the window: counted as a classification, never as a histogram observation.
        session.execute(
            update(Classification)
            .where(Classification.content_id == ids[4])
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )

    since = datetime.now(UTC) - timedelta(minutes=DEFAULT_METRICS_WINDOW_MINUTES)
    with session_scope(migrated_db) as session:
        states = content_states(session, ["finbert", "prosus"])
        sentiments = classifications_by_sentiment(session)
        audits = recent_audit(session, since, (0.001, 0.005, 0.5), (1.0, 5.0, 10.0))
    assert set(audits) == {"finbert", "prosus"}
    assert (audits["prosus"].model_seconds.count, audits["prosus"].model_seconds.counts) == (1, (0, 0, 1))
    recent = audits["finbert"]
    model, queued = recent.model_seconds, recent.queue_seconds

    # 9 contents, 2 skipped: finbert lacks 7 - 5, prosus 7 - 1.
    assert states.skipped == {"no_text_to_classify": 2} and states.unclassified == {"finbert": 2, "prosus": 6}
    assert sentiments == {
        ("finbert", "positive", "m1"): 1,
        ("finbert", "negative", "m1"): 2,
        ("finbert", "neutral", "m1"): 2,
        ("prosus", "neutral", "m1"): 1,
    }
    assert (model.counts, model.count) == ((0, 2, 3), 3)
    assert model.total == pytest.approx(0.208)
    assert (queued.counts, queued.count) == ((0, 2, 2), 2)
    assert queued.total == pytest.approx(10.0)
    assert sorted(recent.shapes, key=lambda shape: shape.items) == [
        ForwardPassShape((1,), 1, 1),
        ForwardPassShape((2,), 2, 2),
    ]


def test_forward_pass_buckets_count_each_batch_once() -> None:
    shapes = [ForwardPassShape((32, 32, 7), 71, 142), ForwardPassShape((1,), 1, 5)]  # two batches, five
    buckets = forward_pass_buckets(shapes, (1.0, 8.0, 32.0))
    assert buckets.counts == (5, 7, 11)
    assert (buckets.count, buckets.total) == (11, 2 * 71 + 5)
    half = forward_pass_buckets([ForwardPassShape((4, 4), 8, 4)], (4.0,))  # half of one batch stored
    assert (half.counts, half.count) == ((1,), 1)


# -- end to end: real workers, real web process ----------------------------------------------------


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def pg_db(postgres_url: str) -> Iterator[str]:
    upgrade(postgres_url)
    yield postgres_url
    engine_for(postgres_url).dispose()


def scrape(web: WebProcess, accept: str | None = None) -> tuple[str, str]:
    headers = basic_auth(USER, PASSWORD) | ({"Accept": accept} if accept else {})
    answer = web.get("/metrics", headers)
    assert answer.status == 200, answer.body
    return answer.body, answer.headers["Content-Type"]


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}, from prometheus_client's own parser."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def histogram(
    found: dict, name: str, bounds: tuple[float, ...], model: str = "finbert"
) -> tuple[list[int], int, float]:
    """(bucket counts for ``bounds``, the +Inf count, the sum) of ``model``'s gauge histogram."""
    buckets = {
        dict(labels)["le"]: value
        for labels, value in found[f"{name}_bucket"].items()
        if dict(labels)["model"] == model
    }
    counts = [int(buckets[floatToGoString(bound)]) for bound in bounds]
    return counts, int(buckets["+Inf"]), found[f"{name}_gsum"][(("model", model),)]


def snapshot(connection: Redis) -> dict[str, object]:
    """Every ``rq:*`` key with its type and content (keys about to expire on their own left out)."""
    readers = {
        b"string": lambda key: connection.get(key),
        b"hash": lambda key: connection.hgetall(key),
        b"list": lambda key: connection.lrange(key, 0, -1),
        b"set": lambda key: connection.smembers(key),
        b"zset": lambda key: connection.zrange(key, 0, -1, withscores=True),
        b"stream": lambda key: connection.xrange(key),
    }
    state: dict[str, object] = {}
    for key in connection.scan_iter("rq:*"):
        if 0 <= connection.pttl(key) < 60_000:
            continue
        kind = connection.type(key)
        state[key.decode()] = (kind, readers[kind](key))
    return state


@pytest.mark.integration
def test_scraped_figures_equal_the_database_and_redis(
    pg_db: str, redis_url: str, connection: Redis, tiny_model_dir: Path, tmp_path: Path
) -> None:
    texts = [headline(i) for i in range(36)] + [LONG_POST, LONG_POST + " again"] + NO_TEXT * 2
    random.Random(3).shuffle(texts)
    ids = add_contents(pg_db, texts)
    never_enqueued = add_contents(pg_db, [headline(100 + i) for i in range(4)])
    identity = database_id(pg_db)
    missing = [max(never_enqueued) + 100 + k for k in range(3)]

    env = {"FINBERT_BATCH_SIZE": "4", "WORKER_BATCH_JOBS": "8"}
    workers = [
        WorkerProcess(redis_url, pg_db, tiny_model_dir, tmp_path / f"worker-{n}.log", env=env)
        for n in range(2)
    ]
    web = WebProcess(
        web_environment(
            tmp_path / "var",
            redis_url,
            DATABASE_URL=pg_db,
            RQ_DASHBOARD_USERNAME=USER,
            RQ_DASHBOARD_PASSWORD=PASSWORD,
        ),
        tmp_path / "web.log",
    )
    try:
        for worker in workers:
            worker.start()
        report = enqueue_ids(connection, pg_db, [*ids, *missing])
        queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
        # Refused at once, unrun: a job of another function, and one of ours with bad arguments.
        foreign = queue.enqueue("os.getcwd", job_id="not-ours")
        bad = queue.enqueue(
            "jobs.classify.classify_content",
            args=[never_enqueued[0], identity, "extra"],
            job_id=job_id_for(never_enqueued[0], identity),
        )
        job_ids = [*report.job_ids, foreign.id, bad.id]

        def all_final() -> bool:
            with connection.pipeline() as pipeline:
                for job_id in job_ids:
                    pipeline.hget(Job.key_for(job_id), "status")
                return all(status is not None and status.decode() in FINAL for status in pipeline.execute())

        wait_for(all_final, JOBS_TIMEOUT, interval=0.2, what="every job to end")
        web.start()

        # The database's truth, read directly.
        with session_scope(pg_db) as session:
            rows = list(session.scalars(select(Classification)))
            contents = list(session.scalars(select(Content)))
            agreed = list(session.scalars(select(Consensus)))
        # Redis's truth: RQ's documented API and plain key reads.
        rq_workers = Worker.all(queue=queue)
        assert len(rq_workers) == 2 and all(worker.get_state() == "idle" for worker in rq_workers)

        text, content_type = scrape(web)
        assert content_type.startswith("text/plain")
        found = samples(text)

        # rq-exporter's figures.
        registries = {
            "queued": queue.key,
            "started": queue.started_job_registry.key,
            "finished": queue.finished_job_registry.key,
            "failed": queue.failed_job_registry.key,
            "deferred": queue.deferred_job_registry.key,
            "scheduled": queue.scheduled_job_registry.key,
        }
        expected_jobs = {
            (("queue", QUEUE_NAME), ("status", status)): float(
                connection.llen(key) if status == "queued" else connection.zcard(key)
            )
            for status, key in registries.items()
        }
        assert found["rq_jobs"] == expected_jobs
        assert expected_jobs[(("queue", QUEUE_NAME), ("status", "failed"))] == 2
        assert expected_jobs[(("queue", QUEUE_NAME), ("status", "finished"))] == len(report.job_ids)
        assert found["rq_workers"] == {
            (("name", w.name), ("queues", QUEUE_NAME), ("state", "idle")): 1.0 for w in rq_workers
        }
        for name, attribute in [
            ("rq_workers_success_total", "successful_job_count"),
            ("rq_workers_failed_total", "failed_job_count"),
            ("rq_workers_working_time_total", "total_working_time"),
        ]:
            assert found[name] == {
                (("name", w.name), ("queues", QUEUE_NAME)): pytest.approx(float(getattr(w, attribute)))
                for w in rq_workers
            }, name
        assert sum(found["rq_workers_success_total"].values()) == len(report.job_ids)

        # The project's figures.
        by_sentiment = Counter((row.model, row.sentiment, row.model_version) for row in rows)
        assert found["volfefe_classifications"] == {
            (("model", model), ("model_version", version), ("sentiment", sentiment)): float(count)
            for (model, sentiment, version), count in by_sentiment.items()
        }
        assert sum(by_sentiment.values()) == len(texts) - len(NO_TEXT) * 2
        assert found["volfefe_consensus"] == {
            (("ambiguous", str(ambiguous).lower()), ("sentiment", sentiment)): float(count)
            for (sentiment, ambiguous), count in Counter((c.sentiment, c.ambiguous) for c in agreed).items()
        }
        assert len(agreed) == len(rows)
        classified = {row.content_id for row in rows}
        skipped = Counter(c.skip_reason for c in contents if c.skip_reason and c.id not in classified)
        assert found["volfefe_skipped_contents"] == {(("reason", r),): float(n) for r, n in skipped.items()}
        assert skipped == {"no_text_to_classify": len(NO_TEXT) * 2}
        unclassified = [c.id for c in contents if c.id not in classified and c.skip_reason is None]
        assert sorted(unclassified) == never_enqueued
        assert found["volfefe_unclassified_contents"] == {(("model", "finbert"),): float(len(never_enqueued))}
        assert found["volfefe_failed_contents"] == {(): 1.0}  # the refused job of ours
        assert found["volfefe_database_up"] == {(): 1.0}

        # The histograms, from every stored classification's audit.
        processing = [row.meta["processing"] for row in rows]
        model_seconds = [p["model_seconds"] for p in processing]
        counts, count, total = histogram(found, "volfefe_model_seconds_per_item", MODEL_SECONDS_BOUNDS)
        assert (counts, count) == (bucket_counts(model_seconds, MODEL_SECONDS_BOUNDS), len(rows))
        assert total == pytest.approx(sum(model_seconds))
        waits = [seconds(p["classified_at"], p["batch"]["enqueued_at"]) for p in processing]
        assert all(0 <= wait < JOBS_TIMEOUT for wait in waits)
        counts, count, total = histogram(found, "volfefe_enqueue_to_stored_seconds", QUEUE_SECONDS_BOUNDS)
        assert (counts, count) == (bucket_counts(waits, QUEUE_SECONDS_BOUNDS), len(rows))
        assert total == pytest.approx(sum(waits), abs=1e-3)
        # Items of one batch share their worker, batch facts and model seconds (two batches may too).
        groups = Counter(
            (p["worker"], p["model_seconds"], json.dumps(p["batch"]["forward_passes"]), p["batch"]["items"])
            for p in processing
        )
        assert all(stored % key[3] == 0 for key, stored in groups.items()), "every batch wholly stored"
        passes = [
            rows_
            for key, stored in groups.items()
            for _ in range(stored // key[3])
            for rows_ in json.loads(key[2])
        ]
        assert max(passes) <= 4 and sum(passes) == sum(row.meta["text"]["windows"] for row in rows)
        counts, count, total = histogram(found, "volfefe_forward_pass_items", FORWARD_PASS_BOUNDS)
        assert (counts, count, total) == (
            bucket_counts(passes, FORWARD_PASS_BOUNDS),
            len(passes),
            sum(passes),
        )

        # Prometheus asks for OpenMetrics: the histograms are typed gauge histograms there.
        text, content_type = scrape(web, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        assert content_type.startswith("application/openmetrics-text")
        types = {family.name: family.type for family in parse_openmetrics(text)}
        assert types["volfefe_model_seconds_per_item"] == "gaugehistogram"
        assert types["rq_workers_success"] == "counter" and types["rq_jobs"] == "gauge"

        # No credentials, no figures.
        anonymous = web.get("/metrics")
        assert anonymous.status == 401 and "rq_jobs" not in anonymous.body

        # Scraping changes nothing in Redis: not even a dead worker's registration, which RQ's
        # Worker.all would remove as it reads.
        for worker in workers:
            assert worker.stop() == 0
        dead = "rq:worker:killed-without-unregistering"
        connection.sadd("rq:workers", dead)
        connection.sadd(f"rq:workers:{QUEUE_NAME}", dead)
        before = snapshot(connection)
        first, _ = scrape(web)
        second, _ = scrape(web)
        assert snapshot(connection) == before
        assert dead.encode() in connection.smembers("rq:workers")
        assert "rq_workers{" not in first and samples(first)["rq_jobs"] == samples(second)["rq_jobs"]
    finally:
        web.stop()
        for worker in workers:
            worker.stop()


@pytest.mark.integration
def test_scrape_without_the_database_still_gives_the_queue(redis_url: str, tmp_path: Path) -> None:
    """An unreachable database: ``volfefe_database_up 0`` and the queue's figures, not an error page."""
    env = web_environment(
        tmp_path / "var",
        redis_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'none.db'}",
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
    )
    with WebProcess(env, tmp_path / "web.log") as web:
        found = samples(scrape(web)[0])
    assert found["volfefe_database_up"] == {(): 0.0}
    assert (("queue", QUEUE_NAME), ("status", "queued")) in found["rq_jobs"]
    assert "volfefe_classifications" not in found
    assert "metrics: cannot read the database" in web.log()
