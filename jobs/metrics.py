"""Prometheus collectors: the whole system's figures, read at scrape time from Redis and the database.

Nothing is counted in the process that serves them: every figure is read when Prometheus scrapes,
from what every worker process on every machine records anyway — RQ's queue, registries and worker
hashes in Redis (``QueueCollector``, with rq-exporter's metric names) and the classifications with
their audit in the database (``DatabaseCollector``). So one scrape of the web process is the whole
system, a restart loses nothing, and a second worker process or machine is counted once.

Scraping writes nothing: registries are counted with ``cleanup=False`` and workers are read with
``jobs.rq_seam.read_workers`` (RQ's ``Worker.all`` removes dead workers as it reads).

The market's reactions to the posts are counted by status and, the significant ones (p below
``market.statistics.DEFAULT_SIGNIFICANCE``, the report's level), by window, each with one grouped
count over an indexed column.

The histograms are gauge histograms of the classifications stored in the last
``VOLFEFE_METRICS_WINDOW_MINUTES`` (a bounded query): their buckets describe that window and may go
down as it moves; read them with ``histogram_quantile(0.9, volfefe_model_seconds_per_item_bucket)``,
without ``rate()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis import Redis
from sqlalchemy.exc import SQLAlchemyError

from config import DEFAULT_MODEL_NAME
from db.identity import database_id
from db.metric_queries import (
    CumulativeBuckets,
    ForwardPassShape,
    classifications_by_sentiment,
    consensus_by_sentiment,
    content_states,
    reactions_by_status,
    recent_audit,
    significant_reactions_by_window,
)
from db.session import session_scope
from errors import VolfefeError, first_line
from jobs.monitoring import queue_counts
from jobs.queue import FAILURE_TTL, classification_queue, parse_job_id
from jobs.rq_seam import read_workers
from market.reaction import SIGNIFICANCE_LEVELS
from market.settings import MarketConfigError, market_settings
from market.statistics import DEFAULT_SIGNIFICANCE

#: bucket bounds, seconds of model time per item (bf16 batched ~0.01 s, fp32 alone ~0.05 s: BENCHMARKS.md).
MODEL_SECONDS_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: bucket bounds, seconds from a job's enqueue to its classification (a backlog takes minutes to hours).
QUEUE_SECONDS_BOUNDS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
#: bucket bounds, rows (texts; a long post's windows count one each) per forward pass.
FORWARD_PASS_BOUNDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
#: the ``reactions.significance`` labels of a p-value below the report's level (``market.reaction``
#: writes ``p<{threshold:g}``): p<0.01 and p<0.05.
SIGNIFICANT_LABELS = tuple(
    f"p<{threshold:g}" for threshold in SIGNIFICANCE_LEVELS if threshold <= DEFAULT_SIGNIFICANCE
)

log = logging.getLogger(__name__)


def _window_text(window: timedelta) -> str:
    return f"classifications stored in the last {window.total_seconds() / 60:g} min"


class QueueCollector(Collector):
    """The queue and its workers, under rq-exporter's names and labels (mdawar/rq-exporter)."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue_name = queue_name

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts = queue_counts(self.connection, self.queue_name)
        jobs = GaugeMetricFamily("rq_jobs", "RQ jobs by queue and status", labels=["queue", "status"])
        for status, count in counts.as_dict().items():
            jobs.add_metric([self.queue_name, status], count)
        yield jobs

        workers = GaugeMetricFamily("rq_workers", "RQ workers", labels=["name", "state", "queues"])
        successes = CounterMetricFamily(
            "rq_workers_success", "Jobs each RQ worker finished", labels=["name", "queues"]
        )
        failures = CounterMetricFamily(
            "rq_workers_failed", "Jobs each RQ worker failed", labels=["name", "queues"]
        )
        working = CounterMetricFamily(
            "rq_workers_working_time", "Seconds each RQ worker spent running jobs", labels=["name", "queues"]
        )
        for worker in read_workers(self.connection, self.queue_name):
            queues = ",".join(worker.queues)
            workers.add_metric([worker.name, worker.state, queues], 1)
            successes.add_metric([worker.name, queues], worker.successful_job_count)
            failures.add_metric([worker.name, queues], worker.failed_job_count)
            working.add_metric([worker.name, queues], worker.total_working_time)
        yield from (workers, successes, failures, working)


class DatabaseCollector(Collector):
    """The project's own figures, from the database (and, for failures, RQ's failed registry).

    When the database cannot be read, ``volfefe_database_up`` is 0 (the cause is logged) and its
    figures are left out: the queue's figures still come through.
    """

    def __init__(
        self,
        database_url: str,
        connection: Redis,
        queue_name: str,
        window: timedelta,
        models: Sequence[str] = (DEFAULT_MODEL_NAME,),
    ) -> None:
        """``window``: the histograms read the classifications stored in this last stretch of time;
        ``models``: the configured model names (VOLFEFE_MODELS)."""
        self.models = tuple(models)
        self.database_url = database_url
        self.connection = connection
        self.queue_name = queue_name
        self.window = window

    def collect(self) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        up = GaugeMetricFamily("volfefe_database_up", "1 when this scrape could read the database, else 0")
        try:
            families = list(self._families())
        except (SQLAlchemyError, VolfefeError) as error:
            log.warning("metrics: cannot read the database: %s", first_line(error))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        since = datetime.now(UTC) - self.window
        with session_scope(self.database_url) as session:
            if session.get_bind().dialect.name == "postgresql":
                # One snapshot for every figure, and a promise to write nothing.
                session.connection(
                    execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
                )
            states = content_states(session, self.models)
            sentiments = classifications_by_sentiment(session)
            consensus = consensus_by_sentiment(session)
            recent = recent_audit(session, since, MODEL_SECONDS_BOUNDS, QUEUE_SECONDS_BOUNDS)
            reactions = reactions_by_status(session)
            significant = significant_reactions_by_window(session, SIGNIFICANT_LABELS)
        identity = database_id(self.database_url)

        classified = GaugeMetricFamily(
            "volfefe_classifications",
            "Current classifications (one per content and model) by model, sentiment and model version",
            labels=["model", "sentiment", "model_version"],
        )
        for (model, sentiment, version), count in sorted(sentiments.items()):
            classified.add_metric([model, sentiment, version], count)
        yield classified

        agreed = GaugeMetricFamily(
            "volfefe_consensus",
            "Contents by the consensus of their models: sentiment, and whether it is ambiguous",
            labels=["sentiment", "ambiguous"],
        )
        for (sentiment, ambiguous), count in sorted(consensus.items()):
            agreed.add_metric([sentiment, "true" if ambiguous else "false"], count)
        yield agreed

        skipped = GaugeMetricFamily(
            "volfefe_skipped_contents", "Contents skipped for good (contents.skip_reason)", labels=["reason"]
        )
        for reason, count in sorted(states.skipped.items()):
            skipped.add_metric([reason], count)
        yield skipped

        by_status = GaugeMetricFamily(
            "volfefe_reactions",
            "Stored reactions (post, linked asset, window) by status: ok, incomplete, awaiting_prices, ...",
            labels=["status"],
        )
        for status, count in sorted(reactions.items()):
            by_status.add_metric([status], count)
        yield by_status
        moved = GaugeMetricFamily(
            "volfefe_significant_reactions",
            f"Stored reactions whose abnormal return is significant (p<{DEFAULT_SIGNIFICANCE:g}) by window",
            labels=["window"],
        )
        for window in _windows(significant):
            moved.add_metric([window], significant.get(window, 0))
        yield moved

        unclassified = GaugeMetricFamily(
            "volfefe_unclassified_contents",
            "Contents not skipped that lack this model's classification: what the sweep enqueues",
            labels=["model"],
        )
        for model in self.models:
            unclassified.add_metric([model], states.unclassified[model])
        yield unclassified
        yield GaugeMetricFamily(
            "volfefe_failed_contents",
            "Contents of this database whose classification job is in RQ's failed registry "
            f"(kept {FAILURE_TTL / 3600:g} h)",
            value=self._failed_contents(identity),
        )
        families = (
            ("volfefe_model_seconds_per_item", f"Model seconds per item, {_window_text(self.window)}"),
            (
                "volfefe_enqueue_to_stored_seconds",
                f"Seconds from a job's latest enqueue to its classification, {_window_text(self.window)}",
            ),
            (
                "volfefe_forward_pass_items",
                f"Rows (texts) per forward pass, in the batches of the {_window_text(self.window)}",
            ),
        )
        histograms = [GaugeHistogramMetricFamily(name, text, labels=["model"]) for name, text in families]
        for model, audit in recent.items():
            buckets = (
                audit.model_seconds,
                audit.queue_seconds,
                forward_pass_buckets(audit.shapes, FORWARD_PASS_BOUNDS),
            )
            for family, figures in zip(histograms, buckets, strict=True):
                _add_histogram(family, model, figures)
        yield from histograms

    def _failed_contents(self, identity: str) -> int:
        registry = classification_queue(self.connection, self.queue_name).failed_job_registry
        contents = set()
        for job_id in registry.get_job_ids(cleanup=False):
            parsed = parse_job_id(job_id)
            if parsed is not None and parsed[1] == identity:
                contents.add(parsed[0])
        return len(contents)


def _windows(counted: dict[str, int]) -> list[str]:
    """The configured reaction windows (0 when none is significant), then any other window counted."""
    try:
        configured = [window.label for window in market_settings().windows]
    except MarketConfigError as error:
        log.warning("metrics: %s", first_line(error))
        configured = []
    return configured + sorted(set(counted) - set(configured))


def forward_pass_buckets(shapes: Sequence[ForwardPassShape], bounds: Sequence[float]) -> CumulativeBuckets:
    """The forward passes of the batches behind ``shapes``, as cumulative buckets of their rows.

    Each stored classification carries its whole batch's shape, so a batch of ``items`` texts counts
    once for every ``items`` classifications: a batch only partly in the window (or partly replaced
    since) counts by the share of it that is, rounded at the end.
    """
    counts = [0.0] * len(bounds)
    count = total = 0.0
    for shape in shapes:
        batches = shape.stored / shape.items
        for index, bound in enumerate(bounds):
            counts[index] += batches * sum(1 for rows in shape.passes if rows <= bound)
        count += batches * len(shape.passes)
        total += batches * sum(shape.passes)
    return CumulativeBuckets(
        tuple(bounds), tuple(round(value) for value in counts), round(count), round(total)
    )


def _add_histogram(family: GaugeHistogramMetricFamily, model: str, buckets: CumulativeBuckets) -> None:
    pairs = [
        (floatToGoString(bound), count) for bound, count in zip(buckets.bounds, buckets.counts, strict=True)
    ]
    family.add_metric([model], [*pairs, ("+Inf", buckets.count)], gsum_value=buckets.total)
