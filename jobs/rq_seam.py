"""Every call this project makes below RQ's documented API, in one place.

RQ has no batch dequeue (rq/rq#928), so the FinbertWorker starts, finishes and hands back many jobs
at once with the same Job, Execution and registry calls RQ's own worker makes for one. Each function
names the RQ code it mirrors; all were checked against **RQ 3.0.0** (pinned in pyproject.toml), and
tests/test_worker_parity.py runs the same jobs through a plain ``SimpleWorker`` and a
``FinbertWorker`` and compares the Redis state they leave. An RQ upgrade fails there first.
"""

from __future__ import annotations

import zlib
from base64 import b64encode
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import uuid4

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.defaults import UNSERIALIZABLE_RETURN_VALUE_PAYLOAD
from rq.exceptions import DeserializationError, StopRequested
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, Execution, ExecutionRegistry
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.results import Result
from rq.scheduler import RQScheduler
from rq.scripts import _build_hset_args
from rq.utils import as_text, current_timestamp, decode_redis_hash, get_version, now, utcformat
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

if TYPE_CHECKING:
    from redis.client import Pipeline, PubSub, PubSubWorkerThread
    from rq.worker import BaseWorker

#: the worker-hash field where our workers record the database they serve (RQ ignores it).
WORKER_DATABASE_FIELD = "volfefe_database"


def job_payload(job: Job) -> tuple[str, list, dict] | None:
    """(function name, args, kwargs) of ``job``, or None when its data cannot be read with its serializer
    or is not of a job's shape (args a list, kwargs a mapping).

    Mirrors ``Job._deserialize_data``: RQ reads the payload lazily and raises ``DeserializationError``
    from whatever property touches it first; reading it here, once, lets a worker refuse such a job
    instead of crashing on it.
    """
    try:
        function, args, kwargs = job.func_name, job.args, job.kwargs
    except (DeserializationError, TypeError, ValueError):
        return None
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return None  # RQ would call function(*args, **kwargs): not the shape of a job
    return function, list(args), dict(kwargs)


def callback_names(job: Job) -> list[str]:
    """The functions a job names besides its own (success, failure and stopped callbacks).

    Reads the names ``Job.restore`` keeps in ``_success_callback_name``, ``_failure_callback_name`` and
    ``_stopped_callback_name`` (RQ 3.0): the public ``success_callback`` (and the others) import the
    function they name, which must not happen before the name is checked.
    """
    names = (job._success_callback_name, job._failure_callback_name, job._stopped_callback_name)
    return [name for name in names if isinstance(name, str) and name]


def needs_rq_success_path(job: Job) -> bool:
    """Whether finishing ``job`` needs more than the batch path mirrors: callbacks, repeats, a rate limit
    or webhooks (``BaseWorker._finalize_success`` / ``handle_job_success`` in RQ 3.0)."""
    return bool(callback_names(job) or job.repeats_left or job.rate_limit_key or job.webhooks)


def stop_requested(worker: BaseWorker) -> bool:
    """Whether a warm shutdown was requested while the worker was busy (SIGTERM, SIGINT, ``rq``'s
    shutdown command).

    Reads the flag ``BaseWorker._shutdown`` sets and ``BaseWorker.work`` checks between two jobs (RQ 3.0
    has no public accessor); a batch checks it between two of its steps.
    """
    return bool(worker._stop_requested)


def scheduler_process(worker: BaseWorker):
    """The process running the worker's scheduler (``--with-scheduler``), or None.

    Reads ``RQScheduler._process``, which ``RQScheduler.start`` (RQ 3.0) sets to the ForkProcess it
    starts; RQ has no accessor, and its own ``stop_scheduler`` waits for it without a limit.
    """
    scheduler = worker.scheduler
    return scheduler._process if scheduler is not None else None


#: how long a stopping worker waits for its pubsub thread (RQ's own join waits 1 s).
PUBSUB_STOP_WAIT = 1.0


def unsubscribe_bounded(worker: BaseWorker) -> None:
    """``BaseWorker.unsubscribe`` (RQ 3.0) with the pubsub thread's stop bounded.

    RQ unsubscribes, then calls ``PubSubWorkerThread.stop()``, which in redis-py 8 joins the thread
    without a limit. A thread that read the UNSUBSCRIBE reply before ``stop()`` cleared its flag waits
    out RQ's ``sleep_time`` (60 s) for a subscription that never comes: a stopping worker stalled a
    minute, and its hash (kept 60 s after its death) was gone before it exited.
    """
    thread = worker.pubsub_thread
    if not thread:
        return
    worker.log.info("Worker %s: unsubscribing from channel %s", worker.name, worker.pubsub_channel_name)
    worker.pubsub.unsubscribe()
    try:
        thread.stop(timeout=PUBSUB_STOP_WAIT)
    except TypeError:  # redis-py before 8: stop() only clears the flag
        thread.stop()
        thread.join(timeout=PUBSUB_STOP_WAIT)
    worker.pubsub.close()


def pubsub_thread_error(
    worker: BaseWorker, error: BaseException, pubsub: PubSub, thread: PubSubWorkerThread
) -> None:
    """``BaseWorker._pubsub_exception_handler`` (RQ 3.0), the handler RQ gives the pubsub thread, with a
    stop ended quietly: StopRequested (Redis stayed away past the stop's grace) ends the thread's loop,
    which then closes its pubsub. RQ's handler re-raises anything but a connection error, and the
    thread died with a traceback in a stopping worker's log; every other error goes to it.
    """
    if isinstance(error, StopRequested):
        thread.stop()  # on the thread itself: clears its flag without joining
        return
    Worker._pubsub_exception_handler(worker, error, pubsub, thread)  # type: ignore[arg-type]


#: Takes up to ARGV[1] ids from the front of the queue (KEYS[1]) into its intermediate list (KEYS[2]),
#: stopping at the first empty answer, and reads each one's job hash (ARGV[2]: the job keys' prefix;
#: the ids are not known before). Returns id, fields, id, fields, ...
_DEQUEUE_SCRIPT = """
local taken = {}
for _ = 1, tonumber(ARGV[1]) do
    local job_id = redis.call("LMOVE", KEYS[1], KEYS[2], "LEFT", "RIGHT")
    if not job_id then
        break
    end
    taken[#taken + 1] = job_id
    taken[#taken + 1] = redis.call("HGETALL", ARGV[2] .. job_id)
end
return taken
"""


def waiting_and_workers(queue: Queue, pipeline: Pipeline | None = None) -> tuple[int, int]:
    """``queue.count`` and ``Worker.count(queue=queue)`` in one round trip: the jobs waiting in the
    queue (RQ 3.0: LLEN of its key) and the workers registered for it (``worker_registration.get_keys``
    counts the members of ``WORKERS_BY_QUEUE_KEY``; SCARD counts the same set without reading it).
    Given a (non-transactional) ``pipeline``, sends it, with the commands it already holds."""
    with pipeline if pipeline is not None else queue.connection.pipeline(transaction=False) as sending:
        sending.llen(queue.key)
        sending.scard(WORKERS_BY_QUEUE_KEY % queue.name)
        *_, waiting, workers = sending.execute()
    return int(waiting), int(workers)


def dequeue_ready(queue: Queue, wanted: int, job_class: type[Job]) -> list[tuple[Job, Queue]]:
    """Up to ``wanted`` jobs from the front of ``queue``, without waiting, in one round trip.

    Mirrors ``Queue.dequeue_any([queue], timeout=None)`` (RQ 3.0, one queue, Redis >= 6.2) called
    ``wanted`` times: ``Queue.lmove`` moves each id to the queue's intermediate list (LMOVE) and
    ``Queue._fetch_dequeued_job`` reads each job (``Job.fetch``: HGETALL, then ``restore``), both done
    by one script (``_DEQUEUE_SCRIPT``) that stops when the queue is empty: a worker filling a batch
    polls with one command, not one a job it still wants. An id whose job hash is gone is passed
    over, as RQ passes over it. A job that cannot be restored, and every id after it, go back to the
    front of the queue as they were, so that RQ's own ``dequeue_any`` meets that job next and handles
    it as it always does.
    """
    connection = queue.connection
    if get_version(connection) < (6, 2, 0):  # RQ pops without an intermediate list there
        taken: list[tuple[Job, Queue]] = []
        try:
            for _ in range(wanted):
                result = Queue.dequeue_any(
                    [queue], None, connection=connection, job_class=job_class, serializer=queue.serializer
                )
                if result is None:
                    break
                taken.append(result)
        except Exception:
            if taken:  # RQ raises for the job it could not read; those before it go back first
                connection.lpush(queue.key, *reversed([job.id for job, _ in taken]))
            raise
        return taken
    intermediate = IntermediateQueue.get_intermediate_queue_key(queue.key)
    script = connection.register_script(_DEQUEUE_SCRIPT)
    reply = script(keys=[queue.key, intermediate], args=[wanted, Job.redis_job_namespace_prefix])
    job_ids = [as_text(job_id) for job_id in reply[::2]]
    taken = []
    for index, (job_id, fields) in enumerate(zip(job_ids, reply[1::2], strict=True)):
        if not fields:
            continue
        raw = dict(zip(fields[::2], fields[1::2], strict=True))
        job = job_class(job_id, connection=connection, serializer=queue.serializer)
        try:
            job.restore(raw)
        except Exception:
            _put_back(queue, intermediate, job_ids[index:])
            break
        taken.append((job, queue))
    return taken


def _put_back(queue: Queue, intermediate: str, job_ids: list[str]) -> None:
    """Return ids moved to the intermediate list to the front of the queue, in their order."""
    with queue.connection.pipeline() as pipeline:
        for job_id in job_ids:
            pipeline.lrem(intermediate, 1, job_id)
        pipeline.lpush(queue.key, *reversed(job_ids))
        pipeline.execute()


#: Marks a batch's jobs started (``start_executions``): for each job, the writes of ``Execution.create``
#: and ``Job.prepare_for_execution`` (RQ 3.0), then the job's key persisted and its id removed from the
#: queue's intermediate list, in that order. KEYS[1] = the worker's executions set, then per job: job
#: hash, execution hash, the job's execution registry, the started registry, the intermediate list.
#: ARGV[1] = the heartbeat TTL, [2] = started-registry score, [3] = execution-registry score, [4] = the
#: execution's timestamp (created_at and last_heartbeat), [5] = the job's (last_heartbeat, started_at),
#: [6] = the worker's name, then per job: job id, execution id, composite key (job id:execution id).
_START_SCRIPT = """
local ttl = tonumber(ARGV[1])
local worker = ARGV[6]
for index = 0, (#KEYS - 1) / 5 - 1 do
    local job_key, execution_key, executions_key = KEYS[2 + index * 5], KEYS[3 + index * 5], KEYS[4 + index * 5]
    local job_id, execution_id, composite = ARGV[7 + index * 3], ARGV[8 + index * 3], ARGV[9 + index * 3]
    redis.call("HSET", execution_key, "id", execution_id, "job_id", job_id, "created_at", ARGV[4],
        "last_heartbeat", ARGV[4], "worker_name", worker)
    redis.call("EXPIRE", execution_key, ttl)
    redis.call("ZADD", executions_key, ARGV[3], execution_id)
    redis.call("EXPIRE", executions_key, ttl + 60)
    redis.call("ZADD", KEYS[5 + index * 5], ARGV[2], composite)
    if worker ~= "" then
        redis.call("SADD", KEYS[1], composite)
        redis.call("EXPIRE", KEYS[1], ttl + 60)
    end
    redis.call("HSET", job_key, "last_heartbeat", ARGV[5], "status", "started", "started_at", ARGV[5],
        "worker_name", worker)
    redis.call("PERSIST", job_key)
    redis.call("LREM", KEYS[6 + index * 5], 1, job_id)
end
"""


def start_executions(
    worker: BaseWorker, batch: Sequence[tuple[Job, Queue]], heartbeat_ttl: int
) -> dict[str, Execution]:
    """Mark every job of ``batch`` started in one round trip; return its Execution by job id.

    Mirrors ``rq.executions.prepare_execution`` + ``BaseWorker.prepare_job_execution`` (RQ 3.0):
    ``Execution.create`` (started registry, execution record), ``job.prepare_for_execution`` and the
    removal from the queue's intermediate list. Started now, a job is recovered through the started
    registry if this worker dies; left in the intermediate list, a finished job would later be failed
    by RQ's maintenance as "stuck in intermediate queue" and run again.

    The writes are RQ's, run by one script for the batch (``_START_SCRIPT``); the keys, ids and values
    are RQ's own objects' (``Execution``, the registries' keys). RQ's calls packed ~10 commands a job
    into the round trip: a third of the worker's Redis time (bench/README.md, "A batch started and
    finished by one script each"). The batch shares one instant, where RQ takes the clock per call;
    tests/test_batch_scripts.py compares every key both leave.
    """
    executions: dict[str, Execution] = {}
    if not batch:
        return executions
    started = now()
    score = current_timestamp() + heartbeat_ttl
    registries: dict[tuple[str, str], str] = {}
    keys: list[str] = [WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker.name)]
    args: list[str | int | float] = [
        heartbeat_ttl,
        score,
        score + 60,
        started.timestamp(),
        utcformat(started),
        worker.name,
    ]
    for job, queue in batch:
        execution = Execution(
            id=uuid4().hex, job_id=job.id, connection=job.connection, worker_name=worker.name
        )
        execution.created_at = execution.last_heartbeat = started
        execution._job = job
        executions[job.id] = execution
        worker.executions[execution.id] = execution
        job.worker_name = worker.name
        job.last_heartbeat = job.started_at = started
        job._status = JobStatus.STARTED
        keys += [
            job.key,
            execution.key,
            ExecutionRegistry(job_id=job.id, connection=job.connection).key,
            _registry_key(registries, job, "started"),
            queue.intermediate_queue_key,
        ]
        args += [job.id, execution.id, execution.composite_key]
    worker.connection.register_script(_START_SCRIPT)(keys=keys, args=args)
    return executions


def heartbeat_executions(
    worker: BaseWorker, jobs: Iterable[tuple[Job, Execution]], heartbeat_ttl: int
) -> None:
    """Extend the started-registry entries of jobs waiting in a batch, in one round trip.

    Mirrors the execution part of ``BaseWorker.maintain_heartbeats`` (RQ 3.0): ``Execution.heartbeat``
    for each job, so that RQ's maintenance does not take a job still waiting its turn as abandoned.
    """
    with worker.connection.pipeline() as pipeline:
        for job, execution in jobs:
            execution.heartbeat(job.started_job_registry, heartbeat_ttl, pipeline=pipeline)
        pipeline.execute()


#: Records a batch's successes (``finish_successes``): for each job, the writes of
#: ``Job._handle_success``, ``Job.cleanup`` and ``cleanup_execution`` (RQ 3.0) in their order, for a
#: positive result TTL; then the worker's two counters. ``Job.set_status`` and ``Job.save`` write the
#: status, then the whole job from the worker's copy: of its fields, only ``ended_at`` and ``status``
#: differ from the hash the start left (tests/test_batch_scripts.py compares the hashes), so one HSET
#: writes those two. A job whose hash has no ``data`` (Redis lost it meanwhile: "A job's remains") is
#: left untouched and its position returned: RQ's calls, which save the worker's whole copy, finish it.
#: KEYS[1] = the worker's hash, [2] = its executions set, then per job: job hash, results stream,
#: finished registry, dependents, dependencies, execution hash, started registry, the job's execution
#: registry. ARGV[1] = the jobs' ended_at, [2] = the successful jobs, [3] = their working seconds, [4] =
#: the worker's name, then per job: job id, result TTL, finished-registry score, execution id,
#: composite key, and the result's fields (their count, then name, value, ...).
_FINISH_SCRIPT = """
local ended_at, worker = ARGV[1], ARGV[4]
local at = 5
local lost = {}
for index = 0, (#KEYS - 2) / 8 - 1 do
    local base = 2 + index * 8
    local job_key, results_key, finished_key = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
    local job_id, ttl, score = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2]
    local execution_id, composite, count = ARGV[at + 3], ARGV[at + 4], tonumber(ARGV[at + 5])
    local fields = {}
    for field = at + 6, at + 5 + count do
        fields[#fields + 1] = ARGV[field]
    end
    at = at + 6 + count
    if redis.call("HEXISTS", job_key, "data") == 0 then
        lost[#lost + 1] = index
    else
        redis.call("HSET", job_key, "ended_at", ended_at, "status", "finished")
        redis.call("XADD", results_key, "MAXLEN", "~", 10, "*", unpack(fields))
        redis.call("EXPIRE", results_key, ttl)
        redis.call("ZADD", finished_key, score, job_id)
        redis.call("EXPIRE", job_key, ttl)
        redis.call("EXPIRE", KEYS[base + 4], ttl)
        redis.call("EXPIRE", KEYS[base + 5], ttl)
        redis.call("DEL", KEYS[base + 6])
        redis.call("ZREM", KEYS[base + 7], composite)
        redis.call("ZREM", KEYS[base + 8], execution_id)
        if worker ~= "" then
            redis.call("SREM", KEYS[2], composite)
        end
    end
end
redis.call("HINCRBY", KEYS[1], "successful_job_count", ARGV[2])
redis.call("HINCRBYFLOAT", KEYS[1], "total_working_time", ARGV[3])
return lost
"""


def finish_successes(
    worker: BaseWorker, finished: Sequence[tuple[Job, Execution]], results: dict[str, object]
) -> None:
    """Record many successes, atomically, in one round trip (two when a job needs RQ's own calls).

    Mirrors ``BaseWorker.handle_job_success`` (RQ 3.0) for jobs without dependents, callbacks,
    repeats, rate limits or webhooks (those go through RQ's own path): the result
    (``Job._handle_success``), ``job.cleanup``, ``cleanup_execution`` and the worker's counters
    (``increment_successful_job_count`` and ``increment_total_working_time``, summed over the batch:
    two commands for the batch instead of two a job, the same totals). Jobs with a positive result TTL
    (every job this project enqueues) are finished by one script (``_FINISH_SCRIPT``, the counters
    with them); then, in one transaction, RQ's calls finish a job with another TTL and one whose hash
    Redis lost meanwhile. The result's fields are those of ``Result.serialize``; RQ's calls packed ~14
    commands a job (bench/README.md, "A batch started and finished by one script each").
    tests/test_batch_scripts.py compares every key both ways leave.
    """
    if not finished:
        return
    ended_at = now()
    score_base = current_timestamp()
    registries: dict[tuple[str, str], str] = {}
    working_seconds = 0.0
    keys: list[str] = [worker.key, WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker.name)]
    args: list[str | int | float | bytes] = [utcformat(ended_at), len(finished), 0.0, worker.name]
    others: list[tuple[Job, Execution, int]] = []  # finished by RQ's calls
    scripted: list[tuple[Job, Execution, int]] = []  # by the script
    for job, execution in finished:
        job.ended_at = ended_at
        job._result = results[job.id]
        job._status = JobStatus.FINISHED
        working_seconds += (ended_at - (job.started_at or ended_at)).total_seconds()
        result_ttl = job.get_result_ttl(worker.default_result_ttl)
        if result_ttl is None or result_ttl <= 0:
            others.append((job, execution, result_ttl))
            continue
        scripted.append((job, execution, result_ttl))
        worker.executions.pop(execution.id, None)
        fields = _success_fields(job, worker.name, execution, ended_at)
        keys += [
            job.key,
            Result.get_key(job.id),
            _registry_key(registries, job, "finished"),
            job.dependents_key,
            job.dependencies_key,
            execution.key,
            _registry_key(registries, job, "started"),
            ExecutionRegistry(job_id=job.id, connection=job.connection).key,
        ]
        args += [job.id, result_ttl, score_base + result_ttl, execution.id, execution.composite_key]
        args += [len(fields) * 2, *(item for pair in fields.items() for item in pair)]
    args[2] = working_seconds
    lost = worker.connection.register_script(_FINISH_SCRIPT)(keys=keys, args=args)
    others += [scripted[index] for index in lost]
    if not others:
        return
    with worker.connection.pipeline() as pipeline:
        for job, execution, result_ttl in others:
            finish_by_rq_calls(worker, job, execution, result_ttl, ended_at, pipeline)
        pipeline.execute()


def finish_by_rq_calls(
    worker: BaseWorker, job: Job, execution: Execution, result_ttl: int | None, ended_at: datetime, pipeline
) -> None:
    """What ``BaseWorker.handle_job_success`` (RQ 3.0) writes for one job without dependents, with RQ's
    own calls, into ``pipeline``: the result, the job's expiry and the execution's cleanup."""
    if result_ttl != 0:
        job._handle_success(
            result_ttl,
            pipeline=pipeline,
            worker_name=worker.name,
            execution_id=execution.id,
            execution_started_at=execution.created_at,
            execution_ended_at=ended_at,
        )
    job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
    worker.cleanup_execution(job, pipeline=pipeline, execution=execution)


def _registry_key(known: dict[tuple[str, str], str], job: Job, kind: str) -> str:
    """The key of ``job``'s started or finished registry (``Job.started_job_registry``,
    ``Job.finished_job_registry``), built once per queue a batch's jobs come from: building the registry
    object resolves its serializer again (tens of microseconds a job)."""
    origin = (job.origin, kind)
    if origin not in known:
        known[origin] = (job.started_job_registry if kind == "started" else job.finished_job_registry).key
    return known[origin]


def _success_fields(
    job: Job, worker_name: str, execution: Execution, ended_at: datetime
) -> dict[str, object]:
    """The fields ``Result.serialize`` (RQ 3.0) gives a successful result, without building a ``Result``
    (whose constructor resolves the serializer again: tens of microseconds a job)."""
    fields: dict[str, object] = {"type": Result.Type.SUCCESSFUL.value, "worker_name": worker_name}
    if job._result is not None:
        try:
            serialized = job.serializer.dumps(job._result)
        except Exception:
            serialized = job.serializer.dumps(UNSERIALIZABLE_RETURN_VALUE_PAYLOAD)
        fields["return_value"] = b64encode(serialized).decode()
    fields["execution_id"] = execution.id
    fields["execution_started_at"] = execution.created_at.timestamp()
    fields["execution_ended_at"] = ended_at.timestamp()
    return fields


def finish_with_dependents(
    worker: BaseWorker, job: Job, queue: Queue, execution: Execution, result: object
) -> None:
    """A success whose job others depend on goes through RQ's own ``handle_job_success``.

    Mirrors what ``BaseWorker._finalize_success`` (RQ 3.0) sets before it calls
    ``handle_job_success``: the end time, ``job._result`` (which ``Job._handle_success`` stores) and the
    FINISHED status; RQ then moves the dependents to ready and enqueues them.
    """
    job.ended_at = now()
    job._result = result
    job._status = JobStatus.FINISHED
    worker.handle_job_success(job, queue, queue.started_job_registry, execution)


def fail_unrun(worker: BaseWorker, job: Job, queue: Queue, execution: Execution, reason: str) -> None:
    """End a job that must not run (or be retried) as FAILED, with ``reason`` as its failure.

    Mirrors ``BaseWorker.handle_job_failure`` (RQ 3.0) with the retries taken away first, so that the
    job lands in the failed registry at once with its own result; no callback, dependent or webhook
    of the job is touched: nothing it names is run.
    """
    job.retries_left = 0
    job.ended_at = now()
    job._status = JobStatus.FAILED
    with worker.connection.pipeline() as pipeline:
        job.set_status(JobStatus.FAILED, pipeline=pipeline)
        pipeline.hset(job.key, "retries_left", 0)
        worker.cleanup_execution(job, pipeline=pipeline, execution=execution)
        job._handle_failure(
            reason,
            pipeline=pipeline,
            worker_name=worker.name,
            execution_id=execution.id,
            execution_started_at=execution.created_at,
            execution_ended_at=job.ended_at,
        )
        worker.increment_failed_job_count(pipeline)
        pipeline.execute()


def hand_back(worker: BaseWorker, jobs: Sequence[tuple[Job, Queue, Execution | None]]) -> None:
    """Return started jobs to the front of their queue, unrun, without using up an attempt.

    The inverse of ``start_executions``: the execution record goes (``Execution.delete``, as
    ``cleanup_execution`` does), and the job is requeued as ``BaseRegistry.requeue`` does it (RQ 3.0:
    ``started_at`` and ``ended_at`` cleared, then ``Queue._enqueue_job``: QUEUED, the whole job saved,
    its id pushed, here at the front) but for ``enqueued_at``, kept so the job keeps its age. The whole
    job is saved because Redis may have lost it meanwhile (see "A job's remains"): the worker holds the
    only copy. Used for a warm shutdown and when Redis, the database or its disk is unavailable: the job
    did not fail, its infrastructure did.
    """
    with worker.connection.pipeline() as pipeline:
        for job, queue, execution in reversed(jobs):
            if execution is not None:
                worker.cleanup_execution(job, pipeline=pipeline, execution=execution)
            job.started_at = job.ended_at = None
            job.worker_name = None
            job.set_status(JobStatus.QUEUED, pipeline=pipeline)
            job.save(pipeline=pipeline)
            queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
        pipeline.execute()


def record_worker_database(worker: BaseWorker, database_id: str, pipeline: Pipeline | None = None) -> None:
    """Note in the worker's own hash which database it serves; it expires with the worker's key.

    A field of ours in RQ's worker hash (``BaseWorker.key``): RQ 3.0 reads only its own fields
    (``BaseWorker.refresh``) and deletes the hash when the worker registers (``register_birth``), so
    this is written after ``bootstrap`` and again with each heartbeat (into its ``pipeline``).
    """
    (pipeline if pipeline is not None else worker.connection).hset(
        worker.key, WORKER_DATABASE_FIELD, database_id
    )


def worker_database(connection: Redis, worker_key: str) -> str | None:
    """The database a live worker serves (``record_worker_database``), None for any other worker."""
    value = connection.hget(worker_key, WORKER_DATABASE_FIELD)
    return value.decode() if value else None


def release_dead_scheduler_lock(worker: BaseWorker, queue_name: str, stale_after: int) -> int | None:
    """Release another scheduler's lock on ``queue_name`` that was not refreshed for ``stale_after`` s.

    Mirrors ``RQScheduler.acquire_locks`` (RQ 3.0): the lock key and its TTL (interval + 60). A killed
    worker's scheduler keeps its lock for another 61 s; until then no scheduler moves the retries of
    its abandoned jobs. Returns the seconds the lock had gone unrefreshed when released, else None.
    """
    assert worker.scheduler is not None
    lock_ttl = worker.scheduler.interval + 60
    key = RQScheduler.get_locking_key(queue_name)
    with worker.connection.pipeline() as pipeline:
        try:
            pipeline.watch(key)  # a refresh by a live holder aborts the delete below
            holder, ttl = pipeline.get(key), pipeline.ttl(key)
            if holder is None or holder.decode() == worker.scheduler.name:
                return None
            if ttl < 0 or ttl > lock_ttl - stale_after:
                return None
            pipeline.multi()
            pipeline.delete(key)
            pipeline.execute()
        except WatchError:
            return None
    return lock_ttl - ttl


def latest_failure(job: Job) -> str:
    """The last line of the job's latest failure (its exception and message), or ''.

    RQ's documented API (``Job.latest_result``, ``Result.exc_string``); here beside the rest so that
    what reads a failure reads it one way.
    """
    result = job.latest_result()
    if result is None or result.type != Result.Type.FAILED:
        return ""
    lines = (result.exc_string or "").strip().splitlines()
    return lines[-1].strip() if lines else ""


def delete_if_failed(connection: Redis, job: Job) -> bool:
    """Delete ``job`` (hash, results, failed-registry entry) only if it is still FAILED; True if deleted.

    Mirrors the parts of ``Job.delete`` (RQ 3.0) that apply to a failed job, inside a WATCH on the job's
    hash, so that two sweeps racing cannot delete the job the other has just enqueued.
    """
    return _delete_if(connection, job, JobStatus.FAILED, FailedJobRegistry)


def delete_if_finished(connection: Redis, job: Job) -> bool:
    """Delete ``job`` (hash, results, finished-registry entry) only if it is still FINISHED; True if
    deleted. As ``delete_if_failed``, for a finished job (``Job.delete``, RQ 3.0)."""
    return _delete_if(connection, job, JobStatus.FINISHED, FinishedJobRegistry)


def _delete_if(connection: Redis, job: Job, status_wanted: JobStatus, registry_class: type) -> bool:
    registry = registry_class(job.origin, connection=connection, serializer=job.serializer)
    with connection.pipeline() as pipeline:
        try:
            pipeline.watch(job.key)
            status = pipeline.hget(job.key, "status")
            if status is None or status.decode() != status_wanted.value:
                return False
            pipeline.multi()
            pipeline.zrem(registry.key, job.id)
            pipeline.delete(job.key, job.dependents_key, job.dependencies_key, Result.get_key(job.id))
            pipeline.execute()
        except WatchError:
            return False
    return True


@dataclass(frozen=True)
class JobCall:
    """One job of a bulk enqueue: what it has of its own; the rest is the template's."""

    job_id: str
    args: tuple
    description: str


#: ``rq.scripts.UNIQUE_ENQUEUE_SCRIPT`` (RQ 3.0.0) run for every job of a chunk in one call: for each
#: job, if its hash exists, skip it; else HSET its fields, EXPIRE it when it has a TTL, RPUSH its id.
#: One difference: a hash without ``data`` counts as absent and is replaced (see "A job's remains").
#: The queue is added to ``rq:queues`` here, not by a SADD beside the script as RQ does it: Redis
#: checks maxmemory once for a script, at its first write, so the whole chunk is saved or none of it.
#: Beside it, a SADD refused for memory (the pipeline's own bytes count) while the script then ran
#: made the enqueuer report 1,000 saved jobs as not enqueued.
#: KEYS[1] = queue key, KEYS[2] = the set of queues, KEYS[3..] = job keys; ARGV[1] = TTL (-1: none),
#: ARGV[2] = n, ARGV[3..2+n] = the fields every job shares (name, value, ...), then per job: id,
#: data, description.
_UNIQUE_ENQUEUE_MANY_SCRIPT = """
redis.call("SADD", KEYS[2], KEYS[1])
local ttl = tonumber(ARGV[1])
local shared_count = tonumber(ARGV[2])
local shared = {}
for index = 3, 2 + shared_count do
    shared[#shared + 1] = ARGV[index]
end
local first = 3 + shared_count
local saved = {}
for job = 3, #KEYS do
    local at = first + (job - 3) * 3
    if redis.call("HEXISTS", KEYS[job], "data") == 1 then
        saved[#saved + 1] = 0
    else
        redis.call("DEL", KEYS[job])
        redis.call("HSET", KEYS[job], "data", ARGV[at + 1], "description", ARGV[at + 2], unpack(shared))
        if ttl and ttl > 0 then
            redis.call("EXPIRE", KEYS[job], ttl)
        end
        redis.call("RPUSH", KEYS[1], ARGV[at])
        saved[#saved + 1] = 1
    end
end
return saved
"""

# A job's remains: a job's hash without ``data`` is no job. RQ cannot run it (``Job.restore`` raises
# NoSuchJobError, "Unexpected job format", and ``Queue.dequeue_any`` passes its id over) and nothing
# ever expires it. Such a hash is what writes to a job leave in a Redis that lost the job: a worker
# holding a batch when a Redis without persistence restarted empty retries its pipeline
# (``PatientRetry``) once Redis answers, and ``Job.prepare_for_execution`` or a heartbeat sets a few
# fields of a hash that is gone. Counted as a job, it would keep its post "already waiting or
# running" at every sweep, for ever.

#: the ``status`` field of each job hash (KEYS), "" where there is none or the hash is a job's remains.
_JOB_STATUSES_SCRIPT = """
local statuses = {}
for index = 1, #KEYS do
    if redis.call("HEXISTS", KEYS[index], "data") == 1 then
        statuses[index] = redis.call("HGET", KEYS[index], "status") or ""
    else
        statuses[index] = ""
    end
end
return statuses
"""

#: jobs whose status one script call reads (Redis runs nothing else meanwhile: about 5 ms).
STATUSES_PER_CALL = 5000

#: fields of a job's hash that ``enqueue_unique`` gives each job of its own.
_OWN_FIELDS = ("data", "description")


def enqueue_unique(queue: Queue, template: Job, calls: Sequence[JobCall]) -> list[bool]:
    """Enqueue, for each call, a job like ``template`` with the call's id, args and description, unless
    a job with that id exists; True where enqueued. One round trip for all of them.

    Mirrors ``Queue.enqueue_job(job, unique=True)`` for each job (RQ 3.0.0): the queue added to
    ``rq:queues``, ``Queue._prepare_for_queue``, ``Job.to_dict`` through ``rq.scripts._build_hset_args``,
    and ``rq.scripts.UNIQUE_ENQUEUE_SCRIPT``, whose steps the script above runs for every job, so each
    is checked and saved atomically as RQ does it. What RQ computes per job is computed per call:
    ``data`` as ``Job.data`` and ``Job.to_dict`` make it (the serializer's dumps of ``(func_name, None,
    args, {})``, zlib-compressed), and ``description``; everything else, ``created_at`` and
    ``enqueued_at`` included, is the template's (one instant for the chunk). Building an RQ ``Job``
    and packing a script call per job cost about 400 µs a job; this about a tenth of that.
    """
    if not calls:
        return []
    if template.kwargs or template.instance is not None:
        raise ValueError("enqueue_unique: the template must take positional args only")
    queue._prepare_for_queue(template)
    fields = _build_hset_args(template)
    shared: list[str | bytes] = []
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        if name not in _OWN_FIELDS:
            shared.extend((name, value))
    dumps = template.serializer.dumps
    func_name = template.func_name
    own: list[str | bytes] = []
    for call in calls:
        own.extend((call.job_id, zlib.compress(dumps((func_name, None, call.args, {}))), call.description))
    ttl = template.ttl if template.ttl is not None else -1
    keys = [queue.key, queue.redis_queues_keys, *(Job.key_for(call.job_id) for call in calls)]
    script = queue.connection.register_script(_UNIQUE_ENQUEUE_MANY_SCRIPT)
    saved = script(keys=keys, args=[ttl, len(shared), *shared, *own])
    return [reply == 1 for reply in saved]


def job_statuses(connection: Redis, job_ids: Sequence[str]) -> list[str | None]:
    """The status of each job (None when it does not exist, or only its remains: "A job's remains").

    Mirrors ``Job.get_status(refresh=True)`` (RQ 3.0: the ``status`` field of the job's hash) for many
    jobs at once, STATUSES_PER_CALL a script call; ``Job.fetch_many`` would read and decode every field of
    every job.
    """
    script = connection.register_script(_JOB_STATUSES_SCRIPT)
    statuses: list[str | None] = []
    for start in range(0, len(job_ids), STATUSES_PER_CALL):
        replies = script(keys=[Job.key_for(job_id) for job_id in job_ids[start : start + STATUSES_PER_CALL]])
        statuses.extend(status.decode() if status else None for status in replies)
    return statuses


@dataclass(frozen=True)
class WorkerRecord:
    """A registered worker as its hash in Redis describes it (the fields ``BaseWorker.refresh`` reads)."""

    name: str
    queues: tuple[str, ...]
    state: str
    successful_job_count: int
    failed_job_count: int
    #: seconds spent running jobs.
    total_working_time: float


def read_workers(connection: Redis, queue_name: str) -> list[WorkerRecord]:
    """The workers registered on ``queue_name`` whose hash exists, by name, in one round trip that writes nothing.

    Mirrors ``BaseWorker.all(queue=...)``, ``find_by_key`` and ``refresh`` (RQ 3.0.0): the members of
    ``rq:workers:<queue>`` and the fields of each worker's hash. Unlike ``find_by_key``, a registered
    worker whose hash has expired (killed without unregistering) is skipped, not removed from
    ``rq:workers``: a reader (``/metrics``) changes nothing, and RQ's own maintenance cleans it up.
    """
    keys = sorted(Worker.all_keys(queue=Queue(queue_name, connection=connection)))
    with connection.pipeline(transaction=False) as pipeline:
        for key in keys:
            pipeline.hgetall(key)
        hashes = pipeline.execute()
    prefix = Worker.redis_worker_namespace_prefix
    records = []
    for key, raw in zip(keys, hashes, strict=True):
        if not raw:
            continue
        fields = decode_redis_hash(raw, decode_values=True)
        records.append(
            WorkerRecord(
                name=key[len(prefix) :],
                queues=tuple(name for name in (fields.get("queues") or "").split(",") if name),
                state=fields.get("state") or "?",
                successful_job_count=int(fields.get("successful_job_count") or 0),
                failed_job_count=int(fields.get("failed_job_count") or 0),
                total_working_time=float(fields.get("total_working_time") or 0),
            )
        )
    return records
