"""Diagnostic: what the pipeline costs per item besides the model, by component.

python -m bench.overhead [--items N]

Not part of ``bench.run``: it explains the gap between the pipeline and the ceiling. The model is
replaced by a stub that returns a fixed prediction at once, and everything runs in this process:

- ``database, one item at a time``: ``jobs.classify.classify_contents([id])`` per item, what a job
  run alone costs (one read, one write transaction);
- ``database, batches of 32``: ``classify_contents(batch)``, the batching worker's database work;
- ``whole worker, batches of 32``: a ``FinbertWorker`` in burst mode draining the queued jobs
  (dequeue, mark started, classify with the stub, store, finish in Redis): the worker's whole cost
  per item apart from the model. Enqueueing and the worker's start (``bootstrap``) are not timed.
  Logging at WARNING.

Each figure is milliseconds per item on SQLite and on PostgreSQL (a private server); their sum
with the model's time per item (1 / ceiling rate) predicts the pipeline's rate on one core. Two last
rows give the Redis and PostgreSQL servers' own CPU during the whole worker's run, per item (``INFO
cpu``; the PostgreSQL processes' times by ``psutil``): in the pipeline they run on the workers' cores.

``--statements``: also each SQL statement's share, by its first words: how many ran per item and the
milliseconds per item from sending it to its result (SQLAlchemy's cursor events; commits not included).

``--collections``: also the garbage collector's runs during each measurement, by generation: how many
and their milliseconds (``gc.callbacks``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from bench.common import evenly_spaced, load_texts, log, raise_on_sigterm, shielded_from_signals
from bench.pipeline import import_texts

BATCH = 32
TEXTS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "financial-headlines.csv"


class StubClassifier:
    """Stands in for the model: a fixed prediction per text, no torch work."""

    model_version = "stub"
    batch_size = BATCH

    def classify_batch(self, texts: list[str]) -> Any:
        from model.classifier import Classified, Prediction

        scores = {"neutral": 0.8, "positive": 0.1, "negative": 0.1}
        passes = [min(BATCH, len(texts) - start) for start in range(0, len(texts), BATCH)]
        return Classified([Prediction("neutral", 0.8, scores) for _ in texts], passes)


def redis_cpu_seconds(connection: Any) -> float:
    """CPU seconds the Redis server has used so far (``INFO cpu``: user + system, its main thread's
    and its background threads')."""
    cpu = connection.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds the PostgreSQL server has used so far: its postmaster's, its live processes' (the
    sessions among them) and those of the processes it has reaped (``psutil``)."""
    import psutil

    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    own = postmaster.cpu_times()
    seconds = own.user + own.system + own.children_user + own.children_system
    for child in postmaster.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = child.cpu_times()
            seconds += times.user + times.system
    return seconds


def one_at_a_time(url: str, redis_url: str, ids: list[int]) -> float:
    """Seconds for ``classify_contents([id])`` for each id in turn."""
    from db.identity import database_id
    from jobs.classify import classify_contents

    identity = database_id(url)
    started = time.perf_counter()
    for content_id in ids:
        classify_contents([(content_id, identity)], url)
    return time.perf_counter() - started


def in_batches(url: str, redis_url: str, ids: list[int]) -> float:
    """Seconds for ``classify_contents`` over batches of BATCH ids."""
    from db.identity import database_id
    from jobs.classify import classify_contents

    identity = database_id(url)
    started = time.perf_counter()
    for start in range(0, len(ids), BATCH):
        classify_contents([(content_id, identity) for content_id in ids[start : start + BATCH]], url)
    return time.perf_counter() - started


#: server name -> a reader of its CPU seconds so far (set by ``measure``).
SERVER_CPU: dict[str, Callable[[], float]] = {}
#: server name -> its CPU seconds during the last ``whole_worker`` measurement (its timed part).
WORKER_SERVER_CPU: dict[str, float] = {}


def whole_worker(url: str, redis_url: str, ids: list[int]) -> float:
    """Enqueue the ids (untimed), then seconds for a burst FinbertWorker to drain them (up to its
    teardown); the servers' CPU seconds meanwhile go to ``WORKER_SERVER_CPU``."""
    from config import load_settings
    from jobs.queue import classification_queue, enqueue_ids
    from services.redis_connection import connect
    from workers.worker import FinbertWorker

    connection = connect(redis_url)
    connection.flushdb()
    queue = classification_queue(connection)
    enqueue_ids(connection, url, ids)
    config = load_settings({"DATABASE_URL": url, "FINBERT_BATCH_SIZE": str(BATCH), "TORCH_THREADS": "1"})
    worker = FinbertWorker([queue], connection=connection, config=config)
    ended: list[float] = []
    teardown = worker.teardown

    def timed_teardown() -> None:  # the queue is drained; unsubscribing can take a second: not timed
        ended.append(time.perf_counter())
        WORKER_SERVER_CPU.update({name: read() - server_cpu[name] for name, read in SERVER_CPU.items()})
        teardown()

    worker.teardown = timed_teardown  # type: ignore[method-assign]
    bootstrap = worker.bootstrap
    started: list[float] = []
    server_cpu: dict[str, float] = {}

    def timed_bootstrap(*args: Any, **kwargs: Any) -> None:  # once a worker's life: not timed
        bootstrap(*args, **kwargs)
        for runs in Collections.listeners:  # nor counted (the worker collects once, then freezes)
            runs.clear()
        server_cpu.update({name: read() for name, read in SERVER_CPU.items()})
        started.append(time.perf_counter())

    worker.bootstrap = timed_bootstrap  # type: ignore[method-assign]
    worker.work(burst=True, logging_level="WARNING")
    return (ended[0] if ended else time.perf_counter()) - started[0]


#: component name -> its measurement: (database URL, Redis URL, content ids) -> seconds.
COMPONENTS: dict[str, Callable[[str, str, list[int]], float]] = {
    "database, one item at a time": one_at_a_time,
    "database, batches of 32": in_batches,
    "whole worker, batches of 32": whole_worker,
}


class StatementTimes:
    """Seconds and counts of SQL statements by their first words, from SQLAlchemy's cursor events."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._started: float | None = None

    def before(self, *_args: Any) -> None:
        self._started = time.perf_counter()

    def after(
        self, _conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, many: bool
    ) -> None:
        if self._started is None:
            return
        head = " ".join(statement.split()[:3]) + (" (executemany)" if many else "")
        self.seconds[head] = self.seconds.get(head, 0.0) + time.perf_counter() - self._started
        self.counts[head] = self.counts.get(head, 0) + 1
        self._started = None

    @contextlib.contextmanager
    def listening(self) -> Iterator[StatementTimes]:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self.before)
        event.listen(Engine, "after_cursor_execute", self.after)
        try:
            yield self
        finally:
            event.remove(Engine, "before_cursor_execute", self.before)
            event.remove(Engine, "after_cursor_execute", self.after)

    def rows(self, items: int) -> list[tuple[str, float, float]]:
        """(statement, count per item, ms per item), the slowest first."""
        ordered = sorted(self.seconds, key=lambda head: -self.seconds[head])
        return [(head, self.counts[head] / items, self.seconds[head] * 1000 / items) for head in ordered]


class Collections:
    """The garbage collector's runs while listening: count and seconds by generation."""

    #: the instances listening now.
    listeners: ClassVar[list[Collections]] = []

    def __init__(self) -> None:
        self.clear()
        self._started = 0.0

    def clear(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.runs[info["generation"]] += 1
        self.seconds[info["generation"]] += time.perf_counter() - self._started

    @contextlib.contextmanager
    def listening(self) -> Iterator[Collections]:
        gc.callbacks.append(self._callback)
        Collections.listeners.append(self)
        try:
            yield self
        finally:
            Collections.listeners.remove(self)
            gc.callbacks.remove(self._callback)


def measure(
    items: int,
    work_dir: Path,
    stack: contextlib.ExitStack,
    statements: bool = False,
    collections: bool = False,
) -> dict[str, Any]:
    from db.migrate import upgrade
    from model.warm import use_classifier
    from services.redis_server import RedisServer
    from tests.servers import PostgresServer

    texts = evenly_spaced(load_texts(TEXTS), items)
    use_classifier(StubClassifier())  # type: ignore[arg-type]
    results: dict[str, Any] = {
        "items": len(texts),
        "databases": {},
        "statements": {},
        "collections": {},
        "server_cpu": {},
    }
    redis = RedisServer(work_dir / "redis")
    stack.callback(redis.stop)
    redis.start()
    postgres = PostgresServer(work_dir / "postgres")
    stack.callback(postgres.stop)
    log("starting PostgreSQL")
    postgres.start()
    urls = {
        "sqlite": f"sqlite:///{work_dir / 'overhead.db'}",
        "postgresql": postgres.create_database("overhead"),
    }
    from services.redis_connection import connect

    redis_client = connect(redis.url)
    stack.callback(redis_client.close)
    for name, url in urls.items():
        upgrade(url)
        figures = {}
        SERVER_CPU.clear()
        SERVER_CPU["Redis"] = lambda: redis_cpu_seconds(redis_client)
        if name == "postgresql":
            SERVER_CPU["PostgreSQL"] = lambda: postgres_cpu_seconds(postgres.data_dir)
        WORKER_SERVER_CPU.clear()
        for label, component in COMPONENTS.items():
            ids = import_texts(url, texts, work_dir, f"{name}-{len(figures)}")
            times = StatementTimes()
            runs = Collections()
            with (
                times.listening() if statements else contextlib.nullcontext(times),
                runs.listening() if collections else contextlib.nullcontext(runs),
            ):
                figures[label] = component(url, redis.url, ids) * 1000 / len(ids)
            if statements:
                results["statements"][(name, label)] = times.rows(len(ids))
            if collections:
                results["collections"][(name, label)] = runs
            log(f"{name}: {label}: {figures[label]:.2f} ms per item")
            if component is whole_worker:
                results["server_cpu"][name] = {
                    server: seconds * 1000 / len(ids) for server, seconds in WORKER_SERVER_CPU.items()
                }
        results["databases"][name] = figures
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--statements", action="store_true", help="also time each SQL statement")
    parser.add_argument(
        "--collections", action="store_true", help="also count and time the garbage collector"
    )
    args = parser.parse_args(argv)
    raise_on_sigterm()
    os.environ["HF_HUB_OFFLINE"] = "1"
    work_dir = Path(tempfile.mkdtemp(prefix="volfefe-overhead-"))
    work_dir.chmod(0o755)
    stack = contextlib.ExitStack()
    try:
        results = measure(args.items, work_dir, stack, args.statements, args.collections)
    except KeyboardInterrupt:
        return 130
    finally:
        with shielded_from_signals():
            stack.close()
            shutil.rmtree(work_dir, ignore_errors=True)
    print(f"\nms per item, {results['items']} items (model replaced by a stub):\n")
    names = list(results["databases"])
    print("| component | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for label in results["databases"][names[0]]:
        print(f"| {label} | " + " | ".join(f"{results['databases'][n][label]:.2f}" for n in names) + " |")
    for server in ("Redis", "PostgreSQL"):
        cells = " | ".join(
            f"{cpu[server]:.3f}" if (cpu := results["server_cpu"].get(n, {})).get(server) is not None else "-"
            for n in names
        )
        print(f"| the {server} server's CPU during the whole worker's run | {cells} |")
    if results["collections"]:
        print("\ngarbage collections during each measurement, by generation: runs (ms)\n")
        print("| database | component | gen 0 | gen 1 | gen 2 |")
        print("| --- | --- | --- | --- | --- |")
        for (database, label), runs in results["collections"].items():
            cells = " | ".join(
                f"{count} ({seconds * 1000:.1f})"
                for count, seconds in zip(runs.runs, runs.seconds, strict=True)
            )
            print(f"| {database} | {label} | {cells} |")
    for (database, label), rows in results["statements"].items():
        print(f"\nSQL statements, {database}, {label} (sending to result; commits not included):\n")
        print("| statement | per item | ms per item |")
        print("| --- | --- | --- |")
        for head, count, milliseconds in rows:
            print(f"| `{head}` | {count:.2f} | {milliseconds:.3f} |")
        total = sum(milliseconds for _, _, milliseconds in rows)
        print(f"| all | {sum(count for _, count, _ in rows):.2f} | {total:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
