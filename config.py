"""Configuration, read once from the environment.

Every setting has a documented default so that the project runs with nothing set:

| variable | default | meaning |
| --- | --- | --- |
| ``DATABASE_URL`` | ``sqlite:///volfefe.db`` | SQLAlchemy URL (``postgresql+psycopg://...`` in production) |
| ``REDIS_URL`` | unset | Redis for the queue; unset: the CLI starts a private ``redis-server`` |
| ``FINBERT_MODEL`` | ``yiyanghkust/finbert-tone`` | hub id or local folder of a sequence-classification model |
| ``VOLFEFE_MODELS`` | ``finbert`` (FINBERT_MODEL alone) | the models every post is read by: ``name=source[;labels=a/b/c][;weight=W]``, comma-separated |
| ``VOLFEFE_AMBIGUOUS_CONFIDENCE`` | ``0.6`` | a consensus below this confidence is ambiguous (so is one with agreement below half) |
| ``VOLFEFE_BACKFILL_PER_SWEEP`` | ``20000`` | contents an hourly sweep enqueues for a model added later, at most (new posts first, always all) |
| ``FINBERT_ENGINE`` | ``openvino`` on a CPU with VNNI or AMX (``OPENVINO_INT8_BY_DEFAULT``), else ``torch`` | ``torch``, or ``openvino`` (the ``openvino`` extra; converted once, by the first worker or ``volfefe model build``) |
| ``FINBERT_PRECISION`` | openvino: ``int8`` on a CPU with VNNI or AMX; torch (and openvino elsewhere): ``bf16`` on a CPU with AVX-512 BF16 or AMX, else ``fp32`` | ``fp32``, ``bf16`` or ``int8`` (see README "Engines and precisions") |
| ``VOLFEFE_ENGINE_CACHE`` | ``~/.cache/volfefe/engines`` | where converted models are kept (``<key>/model.xml``), outside the repository |
| ``FINBERT_BATCH_SIZE`` | ``32`` | texts per forward pass: a batch runs in no more passes than that, cut where they pad the fewest tokens (up to twice as many short texts in one) |
| ``WORKER_BATCH_JOBS`` | ``256`` | ready jobs a worker takes at once, sorted by length into forward passes |
| ``FINBERT_BATCH_WAIT_MS`` | ``2`` | how long a worker waits for more jobs to fill a batch while they arrive |
| ``FINBERT_MAX_LENGTH`` | ``512`` | tokens per forward pass row (longer texts are read in windows) |
| ``FINBERT_LABELS`` | unset | label names in id order, for a model whose config has none |
| ``TORCH_THREADS`` | cores / ``WORKER_PROCESSES`` | torch intra-op threads per worker process |
| ``WORKER_PROCESSES`` | ``1`` | worker processes sharing this machine (sets the default threads) |
| ``VOLFEFE_DATA_DIR`` | ``./var`` | where the embedded Redis keeps its files |
| ``VOLFEFE_QUEUE`` | ``ml_classification`` | the Redis queue of this database's jobs (one database per queue) |
| ``PORT`` | ``9181`` | the port ``volfefe web`` listens on (Procfile runners such as honcho set it) |
| ``VOLFEFE_METRICS_WINDOW_MINUTES`` | ``60`` | ``/metrics`` histograms describe the classifications stored in this last stretch (bounds a scrape's cost) |
| ``RQ_DASHBOARD_USERNAME``, ``RQ_DASHBOARD_PASSWORD`` | unset | ``volfefe web``'s credentials (both or neither); unset: generated once, kept in ``<data dir>/web/credentials`` |
| ``REDIS_CONNECT_TIMEOUT`` | ``5`` | seconds to wait for Redis to accept a connection |
| ``REDIS_SOCKET_TIMEOUT`` | ``15`` | seconds to wait for any Redis answer; a worker's blocking dequeue waits at most this less 5 |
| ``REDIS_HEALTH_CHECK_INTERVAL`` | ``10`` | seconds a Redis connection may sit idle before it is checked with PING before use |
| ``TCP_KEEPALIVE_IDLE``, ``TCP_KEEPALIVE_INTERVAL``, ``TCP_KEEPALIVE_COUNT`` | ``10``, ``5``, ``3`` | TCP keepalive of every Redis and PostgreSQL connection: a silent peer is dropped after idle + interval x count seconds |
| ``DATABASE_CONNECT_TIMEOUT`` | ``5`` | seconds to wait for PostgreSQL to accept a connection (whole seconds, at least 2) |
| ``DATABASE_STATEMENT_TIMEOUT`` | ``15`` | seconds PostgreSQL lets one statement run (or a transaction sit idle); a client that has heard nothing for 5 s more treats the connection as gone |
| ``DATABASE_LOCK_TIMEOUT`` | ``10`` | seconds a PostgreSQL statement waits for a lock |
| ``STOP_GRACE`` | ``10`` | seconds a stopping worker keeps trying to reach an unreachable Redis to hand its jobs back |
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from errors import VolfefeError

DEFAULT_DATABASE_URL = "sqlite:///volfefe.db"
#: the queue's name when VOLFEFE_QUEUE is unset.
DEFAULT_QUEUE_NAME = "ml_classification"
DEFAULT_MODEL = "yiyanghkust/finbert-tone"
#: the name of the model FINBERT_MODEL configures (the only one unless VOLFEFE_MODELS lists more).
DEFAULT_MODEL_NAME = "finbert"
#: a model's short name: stored with each classification, in job ids, metric labels and URLs.
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: a consensus whose confidence (mean probability of its sentiment) is below this is ambiguous.
DEFAULT_AMBIGUOUS_CONFIDENCE = 0.6
#: contents lacking only a model added later that one hourly sweep enqueues at most: a backfill of
#: millions goes at this pace (20,000 an hour) instead of standing in front of new posts.
DEFAULT_BACKFILL_PER_SWEEP = 20_000
PRECISIONS = ("fp32", "bf16", "int8")
#: inference engines; ``openvino`` needs the ``openvino`` extra (its conversion is built on first use).
ENGINES = ("torch", "openvino")
#: converted models (OpenVINO IR) live here, one folder per conversion key.
DEFAULT_ENGINE_CACHE = "~/.cache/volfefe/engines"
#: CPU flags (``/proc/cpuinfo``) of instructions that compute in bf16.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: CPU flags of int8 multiply-add instructions (VNNI, AMX): where OpenVINO int8 pays.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (empty where there is no ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


#: whether OpenVINO int8 is the default on a CPU with VNNI or AMX: the fastest setting there, the model
#: alone (204 against 101 items/s for torch bf16 on 2 Zen 4 EPYC cores; 569 against 428 on Sapphire
#: Rapids), and on the trained stand-ins it keeps the default rule since SmoothQuant is off (2 of 716
#: held-out labels moved on each of two, accuracy -0.28 and -0.14 points; README "Engines and precisions"). The
#: first worker builds its conversion; where it cannot, torch runs with one warning line.
OPENVINO_INT8_BY_DEFAULT = True


def default_engine(flags: frozenset[str] | None = None, int8_by_default: bool | None = None) -> str:
    """``openvino`` on a CPU with int8 multiply-add instructions (VNNI or AMX) when OpenVINO int8 keeps
    the default rule (``OPENVINO_INT8_BY_DEFAULT``); ``torch`` otherwise (and on every CPU without
    VNNI, where OpenVINO int8 is no faster than torch fp32)."""
    wanted = OPENVINO_INT8_BY_DEFAULT if int8_by_default is None else int8_by_default
    return "openvino" if wanted and INT8_FLAGS & (cpu_flags() if flags is None else flags) else "torch"


def default_precision(flags: frozenset[str] | None = None, engine: str = "torch") -> str:
    """``int8`` for OpenVINO on a CPU with VNNI or AMX. Otherwise ``bf16`` on a CPU that computes in bf16
    (AVX-512 BF16 or AMX): torch bf16 runs 2.1x fp32 there, with fp32's accuracy; ``fp32`` elsewhere,
    where torch emulates bf16 at a sixth of fp32's speed (2.5 against 14.9 items/s on an AVX2 EPYC)."""
    flags = cpu_flags() if flags is None else flags
    if engine == "openvino" and INT8_FLAGS & flags:
        return "int8"
    return "bf16" if BF16_FLAGS & flags else "fp32"


def resolve_engine(
    engine: str | None,
    precision: str | None,
    flags: frozenset[str] | None = None,
    int8_by_default: bool | None = None,
) -> tuple[str, str, str]:
    """(engine, precision, torch precision) for FINBERT_ENGINE and FINBERT_PRECISION (None: unset).

    Unset, the engine is this CPU's default (``default_engine``) only when the precision is unset too:
    a FINBERT_PRECISION set alone keeps meaning torch at that precision, as it always did. Unset, the
    precision is the engine's default on this CPU. The torch precision is what runs if the engine
    cannot (OpenVINO missing, or its conversion failed): FINBERT_PRECISION, else torch's default.
    """
    flags = cpu_flags() if flags is None else flags
    chosen_engine = engine or (default_engine(flags, int8_by_default) if precision is None else "torch")
    chosen_precision = precision or default_precision(flags, chosen_engine)
    return chosen_engine, chosen_precision, precision or default_precision(flags, "torch")


#: torch's default precision on this CPU.
DEFAULT_PRECISION = default_precision()
#: the engine a process runs here with FINBERT_ENGINE and FINBERT_PRECISION unset.
DEFAULT_ENGINE = default_engine()
#: texts per forward pass: a batch runs in no more passes than that (``model.passes``).
DEFAULT_BATCH_SIZE = 32
#: ready jobs a worker takes at once: enough texts to sort by length, so that each forward pass
#: pads little (32 jobs in queue order padded to their longest ran at half the speed; BENCHMARKS.md).
DEFAULT_WORKER_BATCH_JOBS = 256
#: milliseconds a worker waits for more ready jobs before running a partial batch.
DEFAULT_BATCH_WAIT_MS = 2.0
#: tokens; BERT's position embeddings end at 512.
DEFAULT_MAX_LENGTH = 512
#: TCP port of ``volfefe web`` when PORT is unset (rq-dashboard's usual port).
DEFAULT_WEB_PORT = 9181
#: minutes of classifications the /metrics histograms read: an hour at 200 items/s is ~720k rows, a
#: few seconds of PostgreSQL per scrape on 2 cores (README "Watching it").
DEFAULT_METRICS_WINDOW_MINUTES = 60
#: seconds to wait for Redis to accept a connection.
DEFAULT_REDIS_CONNECT_TIMEOUT = 5.0
#: seconds to wait for any Redis answer: a black-holed Redis is noticed within this.
DEFAULT_REDIS_SOCKET_TIMEOUT = 15.0
#: seconds of that timeout a blocking dequeue leaves free, so that Redis's "nothing came" answer
#: arrives before the socket gives up on it.
DEQUEUE_MARGIN = 5.0
#: seconds a pooled Redis connection may sit idle before a PING checks it before use.
DEFAULT_REDIS_HEALTH_CHECK_INTERVAL = 10
#: seconds of silence before the first TCP keepalive probe, seconds between probes, and probes
#: unanswered before the connection is dropped (10 + 5 x 3 = 25 s on a cut network).
DEFAULT_TCP_KEEPALIVE_IDLE = 10
DEFAULT_TCP_KEEPALIVE_INTERVAL = 5
DEFAULT_TCP_KEEPALIVE_COUNT = 3
#: seconds to wait for PostgreSQL to accept a connection (libpq takes whole seconds, at least 2).
DEFAULT_DATABASE_CONNECT_TIMEOUT = 5
#: seconds PostgreSQL lets a statement run, or a transaction sit idle: a batch's reads and its write
#: take well under a second (BENCHMARKS.md); one 15x slower than that is a fault. With the answer
#: deadline (db.bounds.ANSWER_GRACE) and a reconnection, a cut connection is noticed within 25 s.
DEFAULT_DATABASE_STATEMENT_TIMEOUT = 15.0
#: seconds a PostgreSQL statement waits for a lock before it fails (and the worker takes the outage path).
DEFAULT_DATABASE_LOCK_TIMEOUT = 10.0
#: seconds a stopping worker keeps trying to reach Redis to hand its jobs back before it leaves them
#: to be recovered when their heartbeats expire.
DEFAULT_STOP_GRACE = 10.0


class ConfigError(VolfefeError, ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class ModelSpec:
    """One sentiment model every post is read by (an entry of VOLFEFE_MODELS)."""

    #: short name (``MODEL_NAME``): what its classifications, reports and metrics are keyed by.
    name: str
    #: hub id or local folder.
    source: str
    #: sentiments in label-id order, for a model whose config names none (or names them otherwise).
    labels: tuple[str, ...] | None = None
    #: its weight in the consensus.
    weight: float = 1.0


def parse_models(
    raw: str, finbert_model: str, finbert_labels: tuple[str, ...] | None
) -> tuple[ModelSpec, ...]:
    """VOLFEFE_MODELS: comma-separated entries ``name=source[;labels=a/b/c][;weight=W]``.

    A bare ``name`` (no ``=source``) is the model FINBERT_MODEL (and FINBERT_LABELS) configure. Empty:
    that model alone, named ``finbert``.
    """
    entries = [entry.strip() for entry in re.split(r"[,\n]", raw) if entry.strip()]
    if not entries:
        return (ModelSpec(DEFAULT_MODEL_NAME, finbert_model, finbert_labels),)
    specs: list[ModelSpec] = []
    for entry in entries:
        head, *options = (part.strip() for part in entry.split(";"))
        name, has_source, source = (part.strip() for part in head.partition("="))
        if not MODEL_NAME.fullmatch(name):
            raise ConfigError(
                f"VOLFEFE_MODELS: {name!r} is not a model name (a lower-case letter, then letters, digits "
                "or '_', at most 32): write name=source, e.g. finbert=yiyanghkust/finbert-tone"
            )
        if has_source and not source:
            raise ConfigError(f"VOLFEFE_MODELS: model {name!r} has no source after '='")
        labels = None if has_source else finbert_labels
        weight = 1.0
        for option in options:
            key, _, value = (part.strip() for part in option.partition("="))
            if key == "labels":
                labels = tuple(label.strip().lower() for label in value.split("/"))
                if len(labels) < 2 or not all(labels):
                    raise ConfigError(
                        f"VOLFEFE_MODELS: model {name!r}: labels={value!r} must name each label in id order, "
                        "separated by '/', e.g. labels=negative/neutral/positive"
                    )
            elif key == "weight":
                weight = _weight(name, value)
            else:
                raise ConfigError(
                    f"VOLFEFE_MODELS: model {name!r}: unknown option {key!r} (options: labels=..., weight=...)"
                )
        specs.append(ModelSpec(name, source if has_source else finbert_model, labels, weight))
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"VOLFEFE_MODELS names {', '.join(repeated)} more than once")
    bare = [entry.split(";")[0].strip() for entry in entries if "=" not in entry.split(";")[0]]
    if len(bare) > 1:
        raise ConfigError(
            f"VOLFEFE_MODELS: {', '.join(bare)} have no source: only one entry may stand for FINBERT_MODEL"
        )
    return tuple(specs)


def _weight(name: str, raw: str) -> float:
    try:
        weight = float(raw)
    except ValueError:
        raise ConfigError(f"VOLFEFE_MODELS: model {name!r}: weight={raw!r} is not a number") from None
    if not math.isfinite(weight) or weight <= 0:
        raise ConfigError(f"VOLFEFE_MODELS: model {name!r}: weight={raw!r} must be a number above 0")
    return weight


def _fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _non_negative_float(environ, name, default)
    if value > 1:
        raise ConfigError(f"{name}={value:g} must be between 0 and 1")
    return value


@dataclass(frozen=True)
class Settings:
    #: URLs may hold passwords: kept out of repr (logs, tracebacks).
    database_url: str = field(repr=False)
    redis_url: str | None = field(repr=False)
    model: str
    precision: str
    batch_size: int
    worker_batch_jobs: int
    batch_wait_ms: float
    max_length: int
    labels: tuple[str, ...] | None
    torch_threads: int
    data_dir: Path
    queue_name: str
    web_port: int = DEFAULT_WEB_PORT
    web_username: str | None = None
    web_password: str | None = field(default=None, repr=False)
    metrics_window_minutes: int = DEFAULT_METRICS_WINDOW_MINUTES
    engine: str = "torch"
    engine_cache: Path = field(default_factory=lambda: Path(DEFAULT_ENGINE_CACHE).expanduser())
    #: WORKER_PROCESSES: worker processes sharing this machine (openvino workers pin disjoint cores).
    worker_processes: int = 1
    #: VOLFEFE_MODELS: every model a post is read by, in order (default: FINBERT_MODEL alone).
    models: tuple[ModelSpec, ...] = ()
    ambiguous_confidence: float = DEFAULT_AMBIGUOUS_CONFIDENCE
    backfill_per_sweep: int = DEFAULT_BACKFILL_PER_SWEEP
    #: the bounds of every connection (seconds, except the keepalive count): see the table above.
    redis_connect_timeout: float = DEFAULT_REDIS_CONNECT_TIMEOUT
    redis_socket_timeout: float = DEFAULT_REDIS_SOCKET_TIMEOUT
    redis_health_check_interval: int = DEFAULT_REDIS_HEALTH_CHECK_INTERVAL
    tcp_keepalive_idle: int = DEFAULT_TCP_KEEPALIVE_IDLE
    tcp_keepalive_interval: int = DEFAULT_TCP_KEEPALIVE_INTERVAL
    tcp_keepalive_count: int = DEFAULT_TCP_KEEPALIVE_COUNT
    database_connect_timeout: int = DEFAULT_DATABASE_CONNECT_TIMEOUT
    database_statement_timeout: float = DEFAULT_DATABASE_STATEMENT_TIMEOUT
    database_lock_timeout: float = DEFAULT_DATABASE_LOCK_TIMEOUT
    stop_grace: float = DEFAULT_STOP_GRACE
    #: the precision torch runs at when ``engine`` cannot run (``resolve_engine``).
    torch_precision: str = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        if not self.models:  # built by hand (tests, benchmarks): FINBERT_MODEL's model alone
            object.__setattr__(self, "models", (ModelSpec(DEFAULT_MODEL_NAME, self.model, self.labels),))

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.models)

    def model_spec(self, name: str) -> ModelSpec:
        """The configured model called ``name``; ConfigError naming the configured ones otherwise."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ConfigError(f"no model {name!r} is configured (VOLFEFE_MODELS: {', '.join(self.model_names)})")

    def for_model(self, spec: ModelSpec) -> Settings:
        """These settings for ``spec`` alone (``model``, ``labels``): what the engine machinery, which
        converts and caches one model at a time, reads."""
        return replace(self, model=spec.source, labels=spec.labels, models=(spec,))


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value


def _non_negative_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _non_negative_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _positive_seconds(environ: Mapping[str, str], name: str, default: float, least: float = 0.0) -> float:
    """A finite number of seconds above zero (and at least ``least``)."""
    value = _non_negative_float(environ, name, default)
    raw = environ.get(name, "").strip()
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be more than 0 seconds")
    if value < least:
        raise ConfigError(f"{name}={raw!r} must be at least {least:g} seconds")
    return value


def _database_url(environ: Mapping[str, str]) -> str:
    """DATABASE_URL, checked to be a SQLAlchemy URL of a database this project supports."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = environ.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL: use sqlite:///path/to/file.db or "
            "postgresql+psycopg://user:password@host/dbname"
        ) from None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"DATABASE_URL names a {backend} database: use SQLite or PostgreSQL")
    return url


def _queue_name(environ: Mapping[str, str]) -> str:
    name = environ.get("VOLFEFE_QUEUE", "").strip() or DEFAULT_QUEUE_NAME
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ConfigError(f"VOLFEFE_QUEUE={name!r} may hold only letters, digits, '_' and '-' (at most 64)")
    return name


def _web_port(environ: Mapping[str, str]) -> int:
    port = _positive_int(environ, "PORT", DEFAULT_WEB_PORT)
    if port > 65535:
        raise ConfigError(f"PORT={port} is not a TCP port (1 to 65535)")
    return port


def _database_connect_timeout(environ: Mapping[str, str]) -> int:
    # libpq counts whole seconds and treats anything below 2 as 2.
    value = _positive_int(environ, "DATABASE_CONNECT_TIMEOUT", DEFAULT_DATABASE_CONNECT_TIMEOUT)
    if value < 2:
        raise ConfigError(f"DATABASE_CONNECT_TIMEOUT={value} must be at least 2 (seconds; libpq's least)")
    return value


def default_torch_threads(processes: int) -> int:
    """Torch threads per worker when ``processes`` workers share this machine: its cores split evenly, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, processes))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``environ`` (default: ``os.environ``); raise ConfigError on a bad value."""
    environ = os.environ if environ is None else environ
    precision_set = environ.get("FINBERT_PRECISION", "").strip().lower() or None
    if precision_set is not None and precision_set not in PRECISIONS:
        raise ConfigError(f"FINBERT_PRECISION={precision_set!r} must be one of {', '.join(PRECISIONS)}")
    engine_set = environ.get("FINBERT_ENGINE", "").strip().lower() or None
    if engine_set is not None and engine_set not in ENGINES:
        raise ConfigError(f"FINBERT_ENGINE={engine_set!r} must be one of {', '.join(ENGINES)}")
    engine, precision, torch_precision = resolve_engine(engine_set, precision_set, _flags())
    labels_raw = environ.get("FINBERT_LABELS", "").strip()
    labels = tuple(label.strip().lower() for label in labels_raw.split(",")) if labels_raw else None
    processes = _positive_int(environ, "WORKER_PROCESSES", 1)
    model = environ.get("FINBERT_MODEL", "").strip() or DEFAULT_MODEL
    models = parse_models(environ.get("VOLFEFE_MODELS", ""), model, labels)
    return Settings(
        database_url=_database_url(environ),
        redis_url=environ.get("REDIS_URL", "").strip() or None,
        model=model,
        precision=precision,
        batch_size=_positive_int(environ, "FINBERT_BATCH_SIZE", DEFAULT_BATCH_SIZE),
        worker_batch_jobs=_positive_int(environ, "WORKER_BATCH_JOBS", DEFAULT_WORKER_BATCH_JOBS),
        batch_wait_ms=_non_negative_float(environ, "FINBERT_BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_MS),
        max_length=_positive_int(environ, "FINBERT_MAX_LENGTH", DEFAULT_MAX_LENGTH),
        labels=labels,
        torch_threads=_positive_int(environ, "TORCH_THREADS", default_torch_threads(processes)),
        data_dir=Path(environ.get("VOLFEFE_DATA_DIR", "").strip() or "var"),
        queue_name=_queue_name(environ),
        web_port=_web_port(environ),
        web_username=environ.get("RQ_DASHBOARD_USERNAME", "").strip() or None,
        web_password=environ.get("RQ_DASHBOARD_PASSWORD") or None,
        metrics_window_minutes=_positive_int(
            environ, "VOLFEFE_METRICS_WINDOW_MINUTES", DEFAULT_METRICS_WINDOW_MINUTES
        ),
        engine=engine,
        engine_cache=Path(
            environ.get("VOLFEFE_ENGINE_CACHE", "").strip() or DEFAULT_ENGINE_CACHE
        ).expanduser(),
        worker_processes=processes,
        models=models,
        ambiguous_confidence=_fraction(environ, "VOLFEFE_AMBIGUOUS_CONFIDENCE", DEFAULT_AMBIGUOUS_CONFIDENCE),
        backfill_per_sweep=_non_negative_int(
            environ, "VOLFEFE_BACKFILL_PER_SWEEP", DEFAULT_BACKFILL_PER_SWEEP
        ),
        redis_connect_timeout=_positive_seconds(
            environ, "REDIS_CONNECT_TIMEOUT", DEFAULT_REDIS_CONNECT_TIMEOUT
        ),
        # The worker's blocking dequeue waits this less DEQUEUE_MARGIN, at least one second.
        redis_socket_timeout=_positive_seconds(
            environ, "REDIS_SOCKET_TIMEOUT", DEFAULT_REDIS_SOCKET_TIMEOUT, least=DEQUEUE_MARGIN + 1
        ),
        redis_health_check_interval=_positive_int(
            environ, "REDIS_HEALTH_CHECK_INTERVAL", DEFAULT_REDIS_HEALTH_CHECK_INTERVAL
        ),
        tcp_keepalive_idle=_positive_int(environ, "TCP_KEEPALIVE_IDLE", DEFAULT_TCP_KEEPALIVE_IDLE),
        tcp_keepalive_interval=_positive_int(
            environ, "TCP_KEEPALIVE_INTERVAL", DEFAULT_TCP_KEEPALIVE_INTERVAL
        ),
        tcp_keepalive_count=_positive_int(environ, "TCP_KEEPALIVE_COUNT", DEFAULT_TCP_KEEPALIVE_COUNT),
        database_connect_timeout=_database_connect_timeout(environ),
        database_statement_timeout=_positive_seconds(
            environ, "DATABASE_STATEMENT_TIMEOUT", DEFAULT_DATABASE_STATEMENT_TIMEOUT
        ),
        database_lock_timeout=_positive_seconds(
            environ, "DATABASE_LOCK_TIMEOUT", DEFAULT_DATABASE_LOCK_TIMEOUT
        ),
        stop_grace=_positive_seconds(environ, "STOP_GRACE", DEFAULT_STOP_GRACE),
        torch_precision=torch_precision,
    )


@cache
def _flags() -> frozenset[str]:
    return cpu_flags()


@cache
def settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return load_settings()
