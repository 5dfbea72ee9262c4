"""FinbertWorker: an RQ SimpleWorker that keeps the model warm and classifies ready jobs in batches.

It takes up to ``WORKER_BATCH_JOBS`` ready jobs at once (the first blocking, the rest only if
they are waiting or arrive within ``FINBERT_BATCH_WAIT_MS``) and marks them all started. Then one
read, forward passes of ``FINBERT_BATCH_SIZE`` texts sorted by length, and one write classify the
batch, and its successes (classified or skipped) are recorded in one Redis round trip with the same
Job calls RQ's success path makes.
A job whose content could not be stored, or any job when the batch as a whole fails, runs alone
through RQ's own ``perform_job``: it fails and is retried on its own, its neighbours untouched.
Every job keeps its own status, result, attempts and uniqueness, exactly as when run alone.
"""

from __future__ import annotations

import sys
import time
from collections import deque

from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError
from redis.retry import Retry
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler
from rq.timeouts import JobTimeoutException
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from config import ConfigError, Settings, settings
from jobs.outcomes import FAILED
from jobs.queue import JOB_FUNCTION, JOB_TIMEOUT
from workers.classifier import ModelLoadError

#: seconds between maintenance passes (abandoned-job recovery); RQ's default is 600.
MAINTENANCE_INTERVAL = 10
#: seconds a started job may go without a heartbeat beyond its timeout before it counts as abandoned.
HEARTBEAT_MARGIN = 10
#: seconds between heartbeats for a batch's jobs that wait while earlier ones run alone.
HEARTBEAT_REFRESH = 5
#: attempts and backoff (seconds) for a Redis command whose connection failed: rides through a Redis
#: restart of 15 s or more. A client made by ``Redis.from_url`` (``rq worker --url``) has none,
#: and RQ's work loop quits the worker on any error outside its dequeue.
REDIS_RETRIES = 15
REDIS_RETRY_BASE = 0.05
REDIS_RETRY_CAP = 2.0
#: seconds without a heartbeat after which another scheduler's lock counts as abandoned.
SCHEDULER_STALE_AFTER = 15


class FinbertWorker(SimpleWorker):
    """Run with ``rq worker ml_classification -w workers.FinbertWorker --with-scheduler``."""

    def __init__(self, *args, config: Settings | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.config = config or settings()
        except ConfigError as error:  # before logging is set up: one line, no traceback
            print(f"rq worker: error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        self.maintenance_interval = min(self.maintenance_interval, MAINTENANCE_INTERVAL)
        # The scheduler process copies these connection settings, so it rides through restarts too.
        # Connection errors only: a timeout keeps RQ's own handling (the worker quits).
        backoff = ExponentialWithJitterBackoff(base=REDIS_RETRY_BASE, cap=REDIS_RETRY_CAP)
        self.connection.set_retry(Retry(backoff, REDIS_RETRIES, supported_errors=(RedisConnectionError,)))
        #: the batch being worked on: taken from the queue, marked started, not finished yet.
        self._pending: deque[tuple[Job, Queue]] = deque()
        self._executions: dict[str, Execution] = {}
        self._heartbeats_sent = 0.0

    @property
    def dequeue_timeout(self) -> int:
        # Wake up for maintenance while idle, so that abandoned jobs are recovered within seconds.
        return max(1, min(super().dequeue_timeout, self.maintenance_interval))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # A job cannot outlive its timeout (the death penalty ends it), so a short margin is safe.
        if job.timeout is None or job.timeout < 0:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout) + HEARTBEAT_MARGIN

    def run_maintenance_tasks(self) -> None:
        if self.scheduler is not None:
            self._release_dead_scheduler_locks()
        super().run_maintenance_tasks()

    def _release_dead_scheduler_locks(self) -> None:
        """Release a scheduler lock whose holder stopped refreshing it, so that this worker takes it over.

        A killed worker's scheduler keeps its lock for another 61 s (interval + 60); until then no
        scheduler moves the retries of its abandoned jobs out of the scheduled registry. The holder
        refreshes the lock every second; one not refreshed for SCHEDULER_STALE_AFTER seconds is dead.
        """
        assert self.scheduler is not None
        lock_ttl = self.scheduler.interval + 60
        for name in self.queue_names():
            key = RQScheduler.get_locking_key(name)
            with self.connection.pipeline() as pipeline:
                try:
                    pipeline.watch(key)  # a refresh by a live holder aborts the delete below
                    holder, ttl = pipeline.get(key), pipeline.ttl(key)
                    if holder is None or holder.decode() == self.scheduler.name:
                        continue
                    if ttl < 0 or ttl > lock_ttl - SCHEDULER_STALE_AFTER:
                        continue
                    pipeline.multi()
                    pipeline.delete(key)
                    pipeline.execute()
                except WatchError:
                    continue
            self.log.warning(
                "Worker %s: scheduler lock for %s not refreshed for %ds; released it",
                self.name,
                name,
                lock_ttl - ttl,
            )

    def bootstrap(self, *args, **kwargs) -> None:
        """Load the model before registering, so that a worker that cannot classify never takes a job."""
        from workers.warm import warm_classifier

        started = time.perf_counter()
        try:
            classifier = warm_classifier(self.config)
        except ModelLoadError as error:
            self.log.error("%s", error)
            raise SystemExit(1) from None
        self.log.info(
            "Worker: model %s loaded from %s in %.2fs (precision %s, %d torch threads, "
            "up to %d jobs at once in forward passes of %d)",
            classifier.model_version,
            self.config.model,
            time.perf_counter() - started,
            self.config.precision,
            self.config.torch_threads,
            self.config.worker_batch_jobs,
            self.config.batch_size,
        )
        super().bootstrap(*args, **kwargs)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Dequeue a job as RQ does, then take the batch it heads and mark the whole batch started."""
        first = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if first is not None:
            # Busy from the first job on: a SIGTERM while the batch fills then waits for the batch
            # (warm shutdown); while idle, RQ raises StopRequested at once, stranding the jobs taken.
            self.set_state(WorkerStatus.BUSY)
            self._pending = deque([first, *self._take_ready_jobs(self.config.worker_batch_jobs - 1)])
            self._start(self._pending)
        return first

    def _take_ready_jobs(self, wanted: int) -> list[tuple[Job, Queue]]:
        """Up to ``wanted`` more jobs: those waiting now, or arriving within the batch wait."""
        taken: list[tuple[Job, Queue]] = []
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        while len(taken) < wanted:
            result = self.queue_class.dequeue_any(
                self._ordered_queues,
                None,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
            if result is not None:
                taken.append(result)
            elif time.monotonic() < deadline and not self._stop_requested:
                time.sleep(0.0005)
            else:
                break
        return taken

    def _start(self, batch: deque[tuple[Job, Queue]]) -> None:
        """Mark every job of the batch started, so that a crash leaves them all recoverable."""
        with self.connection.pipeline() as pipeline:
            for job, queue in batch:
                ttl = self.get_heartbeat_ttl(job)
                self._executions[job.id] = Execution.create(
                    job, ttl, pipeline=pipeline, worker_name=self.name
                )
                job.prepare_for_execution(self.name, pipeline=pipeline)
                # Started now, so recovered through the started registry if this worker dies, as RQ's
                # own prepare_job_execution does; left in the intermediate list, a finished job would
                # later be failed by RQ's maintenance as "stuck in intermediate queue" and run again.
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            pipeline.execute()
        self._heartbeats_sent = time.monotonic()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the batch ``job`` heads: classify and finish it in bulk; what failed runs alone."""
        if not self._pending:  # called outside the batch loop (e.g. by RQ's own tooling)
            self.set_state(WorkerStatus.BUSY)
            self._pending = deque([(job, queue)])
            self._start(self._pending)
        outcomes = self._classify_batch()
        finished = [(job, queue) for job, queue in self._pending if outcomes.get(job.id, FAILED) != FAILED]
        self._finish(finished, outcomes)
        done = {job.id for job, _queue in finished}
        self._pending = deque((job, queue) for job, queue in self._pending if job.id not in done)
        while self._pending and not self._stop_requested:
            job, queue = self._pending.popleft()
            self._refresh_pending_heartbeats()
            execution = self._executions.pop(job.id, None) or self.prepare_execution(job)
            self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def _classify_batch(self) -> dict[str, str | dict]:
        """Job id -> the job's result for the batch's classification jobs, or FAILED where one failed.

        Jobs missing from the answer (other functions, or the whole batch failing) run alone.
        """
        from jobs.classify import classify_contents

        jobs = {
            job.args[0]: job for job, _queue in self._pending if job.func_name == JOB_FUNCTION and job.args
        }
        if not jobs:
            return {}
        first = next(iter(jobs.values()))
        try:
            with self.death_penalty_class(first.timeout or JOB_TIMEOUT, JobTimeoutException, job_id=first.id):
                outcomes = classify_contents(list(jobs), self.config.database_url)
        except Exception as error:
            self.log.warning(
                "Worker %s: batch of %d failed (%s); running its jobs one by one", self.name, len(jobs), error
            )
            return {}
        return {
            jobs[outcome.content_id].id: FAILED if outcome.status == FAILED else outcome.as_result()
            for outcome in outcomes
        }

    def _finish(self, finished: list[tuple[Job, Queue]], results: dict[str, str | dict]) -> None:
        """Record the batch's successes in one round trip, with the calls RQ's success path makes.

        A job that others depend on goes through RQ's own ``handle_job_success``, which releases them.
        """
        if not finished:
            return
        ended_at = now()
        with self.connection.pipeline(transaction=False) as pipeline:
            for job, _queue in finished:
                pipeline.exists(job.dependents_key)
            has_dependents = pipeline.execute()
        for job, _queue in finished:
            job.ended_at = ended_at
            job._result = results[job.id]
            job._status = JobStatus.FINISHED
        with self.connection.pipeline() as pipeline:
            for (job, _queue), dependents in zip(finished, has_dependents, strict=True):
                if dependents:
                    continue
                execution = self._executions.pop(job.id)
                result_ttl = job.get_result_ttl(self.default_result_ttl)
                job._handle_success(
                    result_ttl,
                    pipeline=pipeline,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=ended_at,
                )
                job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
                self.cleanup_execution(job, pipeline=pipeline, execution=execution)
                self.increment_successful_job_count(pipeline=pipeline)
                self.increment_total_working_time(ended_at - (job.started_at or ended_at), pipeline)
            pipeline.execute()
        for (job, queue), dependents in zip(finished, has_dependents, strict=True):
            if dependents:
                execution = self._executions.pop(job.id)
                self.handle_job_success(job, queue, queue.started_job_registry, execution)
        self.log.info("Worker %s: finished %d jobs in one batch", self.name, len(finished))

    def _refresh_pending_heartbeats(self) -> None:
        """Keep the batch's waiting jobs alive while earlier ones run alone (throttled)."""
        if not self._pending or time.monotonic() - self._heartbeats_sent < HEARTBEAT_REFRESH:
            return
        with self.connection.pipeline() as pipeline:
            for job, _queue in self._pending:
                execution = self._executions.get(job.id)
                if execution is not None:
                    execution.heartbeat(
                        job.started_job_registry, self.get_heartbeat_ttl(job), pipeline=pipeline
                    )
            pipeline.execute()
        self._heartbeats_sent = time.monotonic()

    def teardown(self) -> None:
        """Hand back the jobs taken but not run (warm shutdown), then unregister."""
        if self._pending:
            self._hand_back()
        super().teardown()

    def _hand_back(self) -> None:
        with self.connection.pipeline() as pipeline:
            for job, queue in reversed(self._pending):
                execution = self._executions.pop(job.id, None)
                if execution is not None:
                    execution.delete(job, pipeline=pipeline)
                job.set_status(JobStatus.QUEUED, pipeline=pipeline)
                queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
            pipeline.execute()
        self.log.info("Worker %s: handed %d unstarted jobs back to the queue", self.name, len(self._pending))
        self._pending.clear()
