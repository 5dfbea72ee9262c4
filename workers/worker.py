"""FinbertWorker: an RQ SimpleWorker that keeps the model warm and classifies ready jobs in batches.

It takes up to ``FINBERT_BATCH_SIZE`` ready jobs at once (the first blocking, the rest only if
they are waiting or arrive within ``FINBERT_BATCH_WAIT_MS``), marks them all started, runs one
forward pass for their texts, then runs each job through RQ's own path (perform_job): every job
keeps its own status, result, retries and failure, exactly as when run alone.
"""

from __future__ import annotations

import os
import time
from collections import deque

from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.worker import SimpleWorker, WorkerStatus

from config import Settings, settings
from jobs.queue import JOB_FUNCTION
from workers.classifier import ModelLoadError

#: seconds between maintenance passes (abandoned-job recovery); RQ's default is 600.
MAINTENANCE_INTERVAL = 10
#: seconds a started job may go without a heartbeat beyond its timeout before it counts as abandoned.
HEARTBEAT_MARGIN = 10


class FinbertWorker(SimpleWorker):
    """Run with ``rq worker ml_classification -w workers.FinbertWorker --with-scheduler``."""

    def __init__(self, *args, config: Settings | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config = config or settings()
        self.maintenance_interval = min(self.maintenance_interval, MAINTENANCE_INTERVAL)
        self._ready: deque[tuple[Job, Queue]] = deque()
        self._executions: dict[str, Execution] = {}

    @property
    def dequeue_timeout(self) -> int:
        # Wake up for maintenance while idle, so that abandoned jobs are recovered within seconds.
        return max(1, min(super().dequeue_timeout, self.maintenance_interval))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # A job cannot outlive its timeout (the death penalty ends it), so a short margin is safe.
        if job.timeout is None or job.timeout < 0:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout) + HEARTBEAT_MARGIN

    def bootstrap(self, *args, **kwargs) -> None:
        """Load the model before registering, so that a worker that cannot classify never takes a job."""
        from workers.warm import warm_classifier

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        started = time.perf_counter()
        try:
            classifier = warm_classifier(self.config)
        except ModelLoadError as error:
            self.log.error("%s", error)
            raise SystemExit(1) from None
        self.log.info(
            "Worker: model %s loaded from %s in %.2fs (precision %s, %d torch threads, batches of %d)",
            classifier.model_version,
            self.config.model,
            time.perf_counter() - started,
            self.config.precision,
            self.config.torch_threads,
            self.config.batch_size,
        )
        super().bootstrap(*args, **kwargs)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        if self._ready:
            return self._ready.popleft()
        first = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if first is None:
            return None
        batch = [first, *self._take_ready_jobs(self.config.batch_size - 1)]
        self._start(batch)
        self._predict(batch)
        self._ready.extend(batch[1:])
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
            elif time.monotonic() < deadline:
                time.sleep(0.0005)
            else:
                break
        return taken

    def _start(self, batch: list[tuple[Job, Queue]]) -> None:
        """Mark every job of the batch started, so that a crash leaves them all recoverable."""
        with self.connection.pipeline() as pipeline:
            for job, _queue in batch:
                ttl = self.get_heartbeat_ttl(job)
                self._executions[job.id] = Execution.create(
                    job, ttl, pipeline=pipeline, worker_name=self.name
                )
                job.prepare_for_execution(self.name, pipeline=pipeline)
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            pipeline.execute()

    def _predict(self, batch: list[tuple[Job, Queue]]) -> None:
        """One forward pass for the batch's texts; on any error the jobs classify on their own."""
        from jobs.classify import texts_to_classify
        from workers.warm import predict_ahead

        ids = [job.args[0] for job, _queue in batch if job.func_name == JOB_FUNCTION and job.args]
        try:
            predict_ahead(list(texts_to_classify(ids, self.config.database_url).values()))
        except Exception as error:
            self.log.warning(
                "Worker %s: batch prediction skipped (%s); jobs run one by one", self.name, error
            )

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self._executions.pop(job.id, None) or self.prepare_execution(job)
        self._refresh_waiting_heartbeats()
        self.perform_job(job, queue, execution)
        if not self._ready:
            self.set_state(WorkerStatus.IDLE)

    def _refresh_waiting_heartbeats(self) -> None:
        if not self._ready:
            return
        with self.connection.pipeline() as pipeline:
            for job, _queue in self._ready:
                execution = self._executions.get(job.id)
                if execution is not None:
                    execution.heartbeat(
                        job.started_job_registry, self.get_heartbeat_ttl(job), pipeline=pipeline
                    )
            pipeline.execute()

    def teardown(self) -> None:
        """Hand back the jobs taken but not run (warm shutdown), then unregister."""
        if self._ready:
            self._hand_back()
        super().teardown()

    def _hand_back(self) -> None:
        with self.connection.pipeline() as pipeline:
            for job, queue in reversed(self._ready):
                execution = self._executions.pop(job.id, None)
                if execution is not None:
                    execution.delete(job, pipeline=pipeline)
                job.set_status(JobStatus.QUEUED, pipeline=pipeline)
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
                queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
            pipeline.execute()
        self.log.info("Worker %s: handed %d unstarted jobs back to the queue", self.name, len(self._ready))
        self._ready.clear()
