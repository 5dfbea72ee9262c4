"""FinbertWorker: an RQ SimpleWorker that keeps the model warm and classifies ready jobs in batches.

It takes up to ``WORKER_BATCH_JOBS`` ready jobs at once (the first blocking, the rest only if they are
waiting or arrive within ``FINBERT_BATCH_WAIT_MS``) and marks them all started. Then:
- a job this project does not run (another function, a callback or webhook, a payload that is not
  JSON of the expected shape, a job of another database) is refused: failed at once, unrun, with a
  one-line reason;
- the rest runs in queue order, as RQ would run it: each run of consecutive classification jobs is
  classified together (one read, forward passes of ``FINBERT_BATCH_SIZE`` texts sorted by length, one
  write) and its successes recorded in one Redis round trip with the calls RQ's success path makes
  (``jobs.rq_seam``); a job whose post failed on its own, a registered job of another kind, and one
  with features the batch path does not mirror (dependents aside) run alone through RQ's own
  ``perform_job``; a warm shutdown ends the batch between two of these steps, and hands back the rest;
- when the database or its disk fails, the batch's jobs go back to the queue unrun, without using an
  attempt, and the worker takes no job until a probe of the database passes (``workers.outage``).
Redis connection errors are retried for as long as Redis is away; every Redis call is bounded
(``REDIS_SOCKET_TIMEOUT``: a black-holed Redis is noticed, then waited out like any outage).
A stop (SIGTERM, SIGINT) ends the worker within a bounded time whatever the state of Redis: the jobs
it holds are handed back when Redis answers within ``STOP_GRACE``, else left started, for another
worker to recover when their heartbeats expire; its scheduler process ends with it
(``workers.lifetime``).
"""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
import time
from dataclasses import dataclass

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.worker import SimpleWorker, WorkerStatus

from config import DEQUEUE_MARGIN, ConfigError, Settings, settings
from db.session import describe
from errors import VolfefeError, first_line
from jobs import rq_seam
from jobs.failures import InfrastructureUnavailable, is_infrastructure_failure
from jobs.outcomes import FAILED, REFUSED
from jobs.queue import JOB_TIMEOUT
from jobs.registry import (
    CLASSIFY_FUNCTION,
    REACT_FUNCTION,
    RECLASSIFY_FUNCTION,
    REGISTERED_JOBS,
    arguments,
    refusal,
)
from services.redis_client import bound_connection
from services.redis_memory import eviction_problem
from workers.lifetime import children_die_with_this_process, end_child
from workers.outage import DatabaseOutage, PatientRetry, postpone_maintenance

#: seconds between maintenance passes (abandoned-job recovery); RQ's default is 600.
MAINTENANCE_INTERVAL = 10
#: seconds a started job may go without a heartbeat beyond its timeout before it counts as abandoned.
HEARTBEAT_MARGIN = 10
#: seconds between heartbeats for a batch's jobs that wait while earlier ones run alone.
HEARTBEAT_REFRESH = 5
#: seconds of time limit a batch gets per job, on top of JOB_TIMEOUT: a slow host keeps its batches
#: (4 items/s at the least, 20x slower than this machine on long posts); it also sets how long a
#: killed worker's batch waits before recovery (JOB_TIMEOUT + 0.25 x 32 + HEARTBEAT_MARGIN = 38 s).
BATCH_SECONDS_PER_JOB = 0.25
#: seconds without a heartbeat after which another scheduler's lock counts as abandoned.
SCHEDULER_STALE_AFTER = 15
#: times one job may be handed back for an infrastructure failure before its failure counts: a post
#: misjudged as an outage still ends in the failed registry instead of looping forever.
MAX_HAND_BACKS = 20
#: job meta key counting those hand-backs.
HAND_BACKS_META = "volfefe_hand_backs"
#: seconds a worker that cannot start waits before exiting, first and at most: a pool restarting it
#: (``rq worker-pool``) backs off instead of spinning.
START_FAILURE_BASE = 1.0
START_FAILURE_CAP = 60.0
#: seconds a run of start failures is remembered (per host) for that backoff.
START_FAILURE_MEMORY = 300
START_FAILURES_KEY = "volfefe:start-failures:{host}"
#: seconds the scheduler process gets to stop after SIGTERM before it is killed (it holds no job).
SCHEDULER_STOP_GRACE = 5.0
#: the job functions whose jobs are classified together in forward passes.
BATCHED_FUNCTIONS = frozenset({CLASSIFY_FUNCTION, RECLASSIFY_FUNCTION, REACT_FUNCTION})


def batch_share(available: int, workers: int, most: int, least: int) -> int:
    """Jobs a worker takes for a batch: WORKER_BATCH_JOBS (``most``), or its even share of the
    ``available`` ones when fewer wait, so that at the end of a backlog every worker gets a part of the
    last jobs instead of one of them working through a full batch while the others idle; never less
    than one forward pass (``least``), which the batch wait (FINBERT_BATCH_WAIT_MS) may still fill."""
    even_share = -(-available // max(workers, 1))
    return max(1, min(most, max(least, even_share)))


def _as_list(queues) -> list:
    return list(queues) if isinstance(queues, list | tuple) else [queues]


@dataclass
class _Taken:
    """A job of the current batch: taken from the queue, marked started, not finished yet."""

    job: Job
    queue: Queue
    execution: Execution
    #: classified with the other plain classification jobs next to it (False: run alone by RQ's path).
    plain: bool = False


class FinbertWorker(SimpleWorker):
    """Run with ``rq worker ml_classification -w workers.FinbertWorker --with-scheduler``."""

    #: the functions this worker runs, with their argument checks (a test subclass may add its own).
    registered_jobs = REGISTERED_JOBS

    def __init__(self, queues, *args, config: Settings | None = None, **kwargs) -> None:
        kwargs["serializer"] = JSONSerializer  # whatever `rq worker -S` says: payloads carry data, not code
        # The CLI builds its queues with its own serializer: given their names, RQ builds ours with JSON.
        names = [queue.name if isinstance(queue, Queue) else queue for queue in _as_list(queues)]
        super().__init__(names, *args, **kwargs)
        try:
            self.config = config or settings()
        except ConfigError as error:  # before logging is set up: one line, no traceback
            print(f"rq worker: error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        self.maintenance_interval = min(self.maintenance_interval, MAINTENANCE_INTERVAL)
        # RQ's command line builds a client that waits as long as the kernel keeps a connection.
        bound_connection(self.connection, self.config)
        #: monotonic time after which a stopping worker tries Redis no more (None: not stopping).
        self._stop_deadline: float | None = None
        # The scheduler process copies these connection settings, so it rides out outages too.
        # When Redis returns from an outage, abandoned-job recovery waits until the live workers have
        # reconnected and finished their jobs (whose heartbeats expired meanwhile).
        self.connection.set_retry(
            PatientRetry(
                lambda: self.name,
                on_back=postpone_maintenance(self),
                stop_deadline=lambda: self._stop_deadline,
            )
        )
        children_die_with_this_process()
        self._batch: list[_Taken] = []
        self._batch_ttl = JOB_TIMEOUT + HEARTBEAT_MARGIN
        self._heartbeats_sent = 0.0
        self._outage = DatabaseOutage(self.config.database_url)
        self._database_id: str | None = None
        self._infrastructure_failure: tuple[str, BaseException] | None = None
        self.push_exc_handler(self._note_infrastructure_failure)

    @property
    def dequeue_timeout(self) -> int:
        # Wake up for maintenance while idle, so that abandoned jobs are recovered within seconds; and
        # block for less than the socket timeout, which would take Redis's "nothing came" for a dead
        # connection. (Read inside RQ's __init__ too, before the config and the bounds are set.)
        config = getattr(self, "config", None)
        answered = super().dequeue_timeout if config is None else config.redis_socket_timeout - DEQUEUE_MARGIN
        return max(1, int(min(super().dequeue_timeout, self.maintenance_interval, answered)))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # A job cannot outlive its timeout (the death penalty ends it), so a short margin is safe.
        if job.timeout is None or job.timeout < 0:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout) + HEARTBEAT_MARGIN

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        # RQ sends a heartbeat as three commands, a round trip each, and RQ's loop sends two around
        # every job (one between taking it and running it). One pipeline sends them together.
        with self.connection.pipeline(transaction=False) as together:
            super().heartbeat(timeout, together)
            if self._database_id is not None:
                # Re-asserted each time: after Redis lost its data, the binding check sees us again.
                rq_seam.record_worker_database(self, self._database_id, together)
            together.execute()

    def run_maintenance_tasks(self) -> None:
        if self.scheduler is not None:
            for name in self.queue_names():
                unrefreshed = rq_seam.release_dead_scheduler_lock(self, name, SCHEDULER_STALE_AFTER)
                if unrefreshed is not None:
                    self.log.warning(
                        "Worker %s: scheduler lock for %s not refreshed for %ds; released it",
                        self.name,
                        name,
                        unrefreshed,
                    )
        super().run_maintenance_tasks()

    # -- start -------------------------------------------------------------------------------------

    def bootstrap(self, *args, **kwargs) -> None:
        """Check the queue, load the model and bind the database before registering.

        A worker that cannot classify, or would serve the wrong database, never takes a job: it
        exits with one line (after a backoff that grows with repeated failures on this host).
        """
        from jobs.binding import bind_queue
        from model.classifier import ModelLoadError
        from model.warm import warm_classifiers

        problem = eviction_problem(self.connection)
        if problem is not None:  # every job this worker took could vanish (services.redis_memory)
            self._exit_at_start(problem)
        if self.queue_names() != [self.config.queue_name]:
            self._exit_at_start(
                f"this worker listens on {', '.join(self.queue_names())} but this database's queue is "
                f"{self.config.queue_name!r} (VOLFEFE_QUEUE): run `rq worker {self.config.queue_name} ...`"
            )
        started = time.perf_counter()
        try:
            classifiers = warm_classifiers(self.config)
            self._database_id = self._wait_for_database_identity()
            bind_queue(
                self.connection, self.config.queue_name, self._database_id, describe(self.config.database_url)
            )
        except (ModelLoadError, VolfefeError) as error:
            self._exit_at_start(str(error))
        self.connection.delete(START_FAILURES_KEY.format(host=socket.gethostname()))
        self.log.info(
            "Worker: %s loaded in %.2fs (engine and precision as their versions say, %d threads, up to "
            "%d jobs at once in forward passes of %d); database %s (id %s), queue %s",
            ", ".join(f"model {name} {classifier.model_version}" for name, classifier in classifiers.items()),
            time.perf_counter() - started,
            self.config.torch_threads,
            self.config.worker_batch_jobs,
            self.config.batch_size,
            describe(self.config.database_url),
            self._database_id,
            self.config.queue_name,
        )
        super().bootstrap(*args, **kwargs)
        rq_seam.record_worker_database(self, self._database_id)
        # What is loaded now (torch, transformers, the models: millions of objects) lives as long as the
        # worker. Frozen, it is left out of every collection: a full one then takes milliseconds, not
        # the ~150 ms that stalled a batch every 1,200-2,400 jobs (bench/README.md, "The heap left out
        # of the collector").
        gc.collect()
        gc.freeze()

    def _wait_for_database_identity(self) -> str:
        """The database's identity, waiting (with backoff) while the database is unavailable."""
        from db.identity import database_id

        while True:
            try:
                return database_id(self.config.database_url)
            except Exception as error:
                if not is_infrastructure_failure(error):
                    raise
                self._outage.begin(error, self.name)
            while not self._outage.due():
                time.sleep(0.2)

    def _exit_at_start(self, message: str) -> None:
        """Log ``message`` as one line, wait the start backoff, exit 1 (a pool restarts us no faster)."""
        key = START_FAILURES_KEY.format(host=socket.gethostname())
        with self.connection.pipeline() as pipeline:
            pipeline.incr(key)
            pipeline.expire(key, START_FAILURE_MEMORY)
            failures = int(pipeline.execute()[0])
        delay = min(START_FAILURE_BASE * 2 ** (failures - 1), START_FAILURE_CAP)
        repeated = f" (start failure {failures} on this host in a row; exiting in {delay:.0f} s)"
        self.log.error("%s%s", message, repeated if failures > 1 else "")
        time.sleep(delay)
        raise SystemExit(1)

    # -- taking a batch ----------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Dequeue a job as RQ does, then take the batch it heads and mark the whole batch started."""
        if not self._wait_out_outage():
            return None
        first = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if first is not None:
            taken = [first, *self._take_ready_jobs(self._busy_with_share() - 1)]
            self._start(taken)
        return first

    def _wait_out_outage(self) -> bool:
        """Take no job while the database is unavailable; False when a stop was requested meanwhile."""
        while self._outage.active:
            if rq_seam.stop_requested(self):
                return False
            if self._outage.due() and self._outage.try_end(self.name):
                break
            self.heartbeat()
            time.sleep(0.5)
        return True

    def _busy_with_share(self) -> int:
        """Mark the worker busy, and say how many jobs the batch just started takes, its first included
        (see ``batch_share``): only that first one when no other was waiting (it runs at once, see
        ``_take_ready_jobs``). One round trip.

        Busy from the first job on: a SIGTERM while the batch fills then waits for the batch (warm
        shutdown); while idle, RQ raises StopRequested at once, stranding the jobs taken."""
        with self.connection.pipeline(transaction=False) as pipeline:
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            waiting, workers = rq_seam.waiting_and_workers(self.queues[0], pipeline)  # the database's queue
        if not waiting:
            return 1
        return batch_share(waiting + 1, workers, self.config.worker_batch_jobs, self.config.batch_size)

    def _take_ready_jobs(self, wanted: int) -> list[tuple[Job, Queue]]:
        """Up to ``wanted`` more jobs: those waiting now, or arriving within the batch wait.

        A first job that came alone (nothing else waiting when it was taken) runs at once: nothing is
        arriving to wait for, and the wait would only add to its latency. A worker kept busy by
        single arrivals finds them waiting, together, after each batch.
        """
        taken: list[tuple[Job, Queue]] = []
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        queue = self.queues[0]  # one queue: the database's (checked at start)
        while len(taken) < wanted:
            more = rq_seam.dequeue_ready(queue, wanted - len(taken), self.job_class)
            if not more and not taken:
                break
            taken.extend(more)
            if len(taken) >= wanted:
                break
            if not more and (time.monotonic() >= deadline or rq_seam.stop_requested(self)):
                break
            if not more:
                time.sleep(0.0005)
        return taken

    def _batch_timeout(self, jobs: int) -> int:
        return int(JOB_TIMEOUT + BATCH_SECONDS_PER_JOB * jobs)

    def _start(self, taken: list[tuple[Job, Queue]]) -> None:
        """Mark every job of the batch started, so that a crash leaves them all recoverable."""
        self._batch_ttl = self._batch_timeout(len(taken)) + HEARTBEAT_MARGIN
        executions = rq_seam.start_executions(self, taken, self._batch_ttl)
        self._batch = [_Taken(job, queue, executions[job.id]) for job, queue in taken]
        self._heartbeats_sent = time.monotonic()

    # -- running a batch ---------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the batch ``job`` heads: refuse, classify and finish in bulk; what needs it runs alone."""
        if not self._batch:  # called outside the batch loop (e.g. by RQ's own tooling)
            self.set_state(WorkerStatus.BUSY)
            self._start([(job, queue)])
        try:
            self._run_batch()
        finally:
            self.set_state(WorkerStatus.IDLE)

    def _run_batch(self) -> None:
        """Run the batch in queue order, as RQ would run its jobs one by one: a job this worker does not
        run is refused; each run of consecutive plain classification jobs is classified together; any
        other job (and a post that failed in its run) runs alone through RQ's ``perform_job``. A stop
        or an outage ends the batch between two of these steps; what is left goes back to the queue."""
        accepted: list[_Taken] = []
        for taken in self._batch:
            reason = refusal(taken.job, self.registered_jobs)
            if reason is not None:
                self._refuse(taken, reason)
                continue
            job = taken.job
            taken.plain = job.func_name in BATCHED_FUNCTIONS and not rq_seam.needs_rq_success_path(job)
            accepted.append(taken)
        self._batch = accepted
        while self._batch and not rq_seam.stop_requested(self) and not self._outage.active:
            self._refresh_waiting_heartbeats()
            if not self._batch[0].plain:
                taken = self._batch.pop(0)
                self.perform_job(taken.job, taken.queue, taken.execution)
                continue
            kind = self._batch[0].job.func_name  # a run holds jobs of one function: classify or reclassify
            run = next(
                (i for i, taken in enumerate(self._batch) if not taken.plain or taken.job.func_name != kind),
                len(self._batch),
            )
            try:
                failed = self._classify_batch(self._batch[:run])
            except InfrastructureUnavailable as error:
                self._hand_back_batch(error)
                return
            for taken in failed:
                taken.plain = False
            self._batch = failed + self._batch[run:]
        if self._outage.active and self._batch:
            self._hand_back_batch(None)

    def _classify_batch(self, plain: list[_Taken]) -> list[_Taken]:
        """Run the batch's plain jobs of one function together (classifications, reclassifications, or
        reactions) and finish them; return those to run alone."""
        from jobs.classify import Redo, classify_contents
        from jobs.react import after_classification, react_contents

        by_request: dict[tuple, _Taken] = {}
        replace: dict[tuple, Redo] = {}
        alone: list[_Taken] = []
        for taken in plain:
            args = arguments(taken.job)
            request = (args[0], args[1])
            if taken.job.func_name == RECLASSIFY_FUNCTION:
                replace[request] = Redo(args[2], args[3] if len(args) > 3 else None)
            if request in by_request:  # a second job for the same post runs after the first, as in RQ
                alone.append(taken)
            else:
                by_request[request] = taken
        timeout = self._batch_timeout(len(plain))
        try:
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=plain[0].job.id):
                if plain[0].job.func_name == REACT_FUNCTION:
                    outcomes = react_contents(list(by_request), self.config.database_url, config=self.config)
                else:
                    outcomes = classify_contents(
                        list(by_request),
                        self.config.database_url,
                        attempts={
                            request: (t.job.number_of_retries or 0) + 1 for request, t in by_request.items()
                        },
                        worker=self.name,
                        replace=replace,
                        enqueued={request: t.job.enqueued_at for request, t in by_request.items()},
                        config=self.config,
                    )
        except InfrastructureUnavailable:
            raise
        except Exception as error:
            self.log.warning(
                "Worker %s: batch of %d failed (%s); running its jobs one by one",
                self.name,
                len(plain),
                first_line(error),
            )
            return plain
        finished: list[_Taken] = []
        results: dict[str, object] = {}
        for request, outcome in zip(by_request, outcomes, strict=True):
            taken = by_request[request]
            if outcome.status == FAILED:
                alone.append(taken)
            elif outcome.status == REFUSED:
                self._refuse(taken, outcome.error or outcome.reason or REFUSED)
            else:
                finished.append(taken)
                results[taken.job.id] = outcome.as_result()
        self._finish(finished, results)
        after_classification(self.connection, self.config, outcomes, self.log)
        to_run_alone = {id(taken) for taken in alone}
        return [taken for taken in plain if id(taken) in to_run_alone]  # in queue order

    def _finish(self, finished: list[_Taken], results: dict[str, object]) -> None:
        """Record the batch's successes in one round trip; a job others depend on goes through RQ's path."""
        if not finished:
            return
        with self.connection.pipeline(transaction=False) as pipeline:
            for taken in finished:
                pipeline.exists(taken.job.dependents_key)
            has_dependents = pipeline.execute()
        plain = [taken for taken, dependents in zip(finished, has_dependents, strict=True) if not dependents]
        rq_seam.finish_successes(self, [(taken.job, taken.execution) for taken in plain], results)
        for taken, dependents in zip(finished, has_dependents, strict=True):
            if dependents:
                rq_seam.finish_with_dependents(
                    self, taken.job, taken.queue, taken.execution, results[taken.job.id]
                )
        self.log.info("Worker %s: finished %d jobs in one batch", self.name, len(finished))

    def _refuse(self, taken: _Taken, reason: str) -> None:
        self.log.warning("Worker %s: refused job %s: %s", self.name, taken.job.id, reason)
        rq_seam.fail_unrun(self, taken.job, taken.queue, taken.execution, f"refused: {reason}")

    def _refresh_waiting_heartbeats(self) -> None:
        """Keep the batch's waiting jobs alive while earlier ones run alone (throttled)."""
        if not self._batch or time.monotonic() - self._heartbeats_sent < HEARTBEAT_REFRESH:
            return
        rq_seam.heartbeat_executions(self, [(t.job, t.execution) for t in self._batch], self._batch_ttl)
        self._heartbeats_sent = time.monotonic()

    # -- outages -----------------------------------------------------------------------------------

    def _hand_back_batch(self, cause: BaseException | None) -> None:
        """Return every job of the batch to its queue, unrun and without using an attempt."""
        if self._batch:
            rq_seam.hand_back(self, [(t.job, t.queue, t.execution) for t in self._batch])
            self.log.info("Worker %s: handed %d jobs back to the queue", self.name, len(self._batch))
            self._batch = []
        if cause is not None:
            self._outage.begin(cause, self.name)

    def _note_infrastructure_failure(self, job: Job, exc_type, exc_value, traceback) -> bool:
        """RQ exception handler: remember that ``job`` failed because its infrastructure did."""
        if exc_value is not None and is_infrastructure_failure(exc_value):
            self._infrastructure_failure = (job.id, exc_value)
        return True  # let RQ's other handlers run

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry=None, exc_string="", execution=None
    ):
        """A job run alone that failed because the database did goes back to the queue, unrun."""
        noted, self._infrastructure_failure = self._infrastructure_failure, None
        if noted is not None and noted[0] == job.id:
            hand_backs = int(job.meta.get(HAND_BACKS_META, 0)) if isinstance(job.meta, dict) else 0
            if hand_backs < MAX_HAND_BACKS:
                job.meta[HAND_BACKS_META] = hand_backs + 1
                job.save_meta()
                rq_seam.hand_back(self, [(job, queue, execution)])
                self._outage.begin(noted[1], self.name)
                return
            self.log.warning(
                "Worker %s: job %s failed on infrastructure errors %d times: counted as its own failure",
                self.name,
                job.id,
                hand_backs,
            )
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    # -- stop ----------------------------------------------------------------------------------------

    def request_stop(self, signum, frame) -> None:
        """SIGTERM or SIGINT: RQ's warm shutdown, trying an unreachable Redis for STOP_GRACE s at most."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.config.stop_grace
        super().request_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        # For `rq info` only (run inside the signal handler): a stop does not wait on it.
        with contextlib.suppress(RedisError, StopRequested):
            super().set_shutdown_requested_date()

    def stop_scheduler(self) -> None:
        """End the scheduler process: SIGTERM, then SIGKILL after SCHEDULER_STOP_GRACE (RQ waits for it
        without a limit, and it waits as long as Redis is away)."""
        process = rq_seam.scheduler_process(self)
        if process is not None:
            end_child(process, SCHEDULER_STOP_GRACE)

    def unsubscribe(self) -> None:
        rq_seam.unsubscribe_bounded(self)

    def _pubsub_exception_handler(self, exc, pubsub, pubsub_thread) -> None:
        rq_seam.pubsub_thread_error(self, exc, pubsub, pubsub_thread)

    def teardown(self) -> None:
        """Hand back the jobs taken but not run (warm shutdown), then unregister. When Redis cannot be
        reached within the stop's grace, the jobs stay started: another worker recovers them when
        their heartbeats expire (none is lost)."""
        try:
            self._hand_back_batch(None)
        except (RedisError, StopRequested):
            self.log.warning(
                "Worker %s: Redis unreachable while stopping: %d jobs left started, to be recovered by "
                "another worker when their heartbeats expire",
                self.name,
                len(self._batch),
            )
            self._batch = []
        try:
            super().teardown()
        except (RedisError, StopRequested):
            self.log.warning("Worker %s: stopped without signing off in Redis (unreachable)", self.name)
